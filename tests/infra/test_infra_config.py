"""Stage settings from cdk.json: both stages load, and a wrong setting fails loudly."""

from __future__ import annotations

import pytest

from infra.config import STAGES_CONTEXT_KEY, ConfigError, StageConfig, cdk_json_context, stage_config

VALID = {"jwtIssuer": "https://issuer.example/", "jwtAudience": "api", "jwksUrl": "https://issuer.example/jwks.json"}


def test_cdk_json_defines_dev_and_prod_and_prod_keeps_its_data():
    stages = cdk_json_context()[STAGES_CONTEXT_KEY]
    real = {"jwtIssuer": "https://login.acme-corp.net/", "jwtAudience": "runs", "jwksUrl": "https://login.acme-corp.net/jwks"}
    dev, prod = stage_config(stages, "dev"), stage_config(stages, "prod", overrides=real)
    assert (dev.retain_data, prod.retain_data) == (False, True)
    assert prod.log_retention_days >= dev.log_retention_days


def test_an_unknown_stage_is_refused():
    with pytest.raises(ConfigError, match="unknown stage 'qa'"):
        stage_config(cdk_json_context()[STAGES_CONTEXT_KEY], "qa")


def test_a_misspelt_setting_is_refused_not_ignored():
    with pytest.raises(ConfigError, match="unknown settings \\['jwtIssuerUrl'\\]"):
        StageConfig.from_mapping("dev", {**VALID, "jwtIssuerUrl": "x"})


def test_a_missing_issuer_is_refused():
    raw = dict(VALID)
    del raw["jwtIssuer"]
    with pytest.raises(ConfigError, match="jwt_issuer"):
        StageConfig.from_mapping("dev", raw)


@pytest.mark.parametrize("seconds", [0, 26, 29])
def test_the_execute_wait_must_stay_below_api_gateways_timeout(seconds):
    with pytest.raises(ConfigError, match="executeWaitSeconds"):
        StageConfig.from_mapping("dev", {**VALID, "executeWaitSeconds": seconds})


def test_a_vpc_endpoint_id_must_look_like_one():
    with pytest.raises(ConfigError, match="privateApiVpcEndpointId"):
        StageConfig.from_mapping("prod", {**VALID, "privateApiVpcEndpointId": "sg-123"})


def test_log_retention_must_be_a_cloudwatch_value():
    with pytest.raises(ConfigError, match="logRetentionDays"):
        StageConfig.from_mapping("dev", {**VALID, "logRetentionDays": 10})


def test_lists_become_tuples():
    config = StageConfig.from_mapping(
        "dev", {**VALID, "jwtAlgorithms": ["RS256"], "httpStepAllowedHosts": ["a.example"]}
    )
    assert config.jwt_algorithms == ("RS256",)
    assert config.http_step_allowed_hosts == ("a.example",)
