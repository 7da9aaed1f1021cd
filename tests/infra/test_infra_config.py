"""Stage settings from cdk.json, cdk.context.json, the environment and -c: both stages load,
and a wrong, missing or placeholder setting fails loudly, naming what to give."""

from __future__ import annotations

import pytest

from infra.config import (
    STAGES_CONTEXT_KEY,
    ConfigError,
    StageConfig,
    cdk_json_context,
    env_name,
    is_placeholder,
    merge_context,
    parse_text,
    resolve_stage_config,
    stage_config,
)

VALID = {"jwtIssuer": "https://issuer.example/", "jwtAudience": "api", "jwksUrl": "https://issuer.example/jwks.json"}


def test_cdk_json_defines_dev_and_prod_and_prod_keeps_its_data():
    stages = cdk_json_context()[STAGES_CONTEXT_KEY]
    real = {
        "jwtIssuer": "https://login.acme-corp.net/",
        "jwtAudience": "runs",
        "jwksUrl": "https://login.acme-corp.net/jwks",
    }
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
    with pytest.raises(ConfigError, match="jwtIssuer is required; give it with `-c jwtIssuer="):
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


# --- settings without editing a file: cdk.context.json, the environment, -c -------------

REAL = {
    "jwtIssuer": "https://login.acme-corp.net/",
    "jwtAudience": "runs-api",
    "jwksUrl": "https://login.acme-corp.net/.well-known/jwks.json",
}


def test_prod_without_an_issuer_fails_naming_the_setting_and_how_to_give_it():
    with pytest.raises(ConfigError) as error:
        resolve_stage_config(cdk_json_context(), "prod", environ={})
    message = str(error.value)
    assert "jwtIssuer" in message and "-c jwtIssuer=" in message and "WORKFLOW_RUNS_JWT_ISSUER" in message


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("jwtIssuer", "https://auth.example.com/"),
        ("jwksUrl", "https://issuer.example/.well-known/jwks.json"),
        ("jwksUrl", "https://localhost/jwks.json"),
        ("jwtAudience", "CHANGEME"),
        ("jwtIssuer", "https://<your-issuer>/"),
    ],
)
def test_prod_refuses_a_placeholder_and_names_the_setting(setting, value):
    with pytest.raises(ConfigError, match=f"{setting} is a placeholder.*-c {setting}="):
        resolve_stage_config({**cdk_json_context(), **REAL, setting: value}, "prod", environ={})


def test_dev_may_keep_the_sample_issuer():
    assert resolve_stage_config(cdk_json_context(), "dev", environ={}).jwt_issuer == "https://auth.dev.example.com/"


def test_placeholders_are_told_from_real_values():
    assert is_placeholder("https://auth.example.com/") and is_placeholder("https://a.example.org/x")
    assert not is_placeholder("https://login.acme-corp.net/") and not is_placeholder("runs-api")


def test_the_environment_gives_settings_and_a_flat_context_key_wins_over_it():
    environ = {
        env_name("jwtIssuer"): "https://from-env.acme-corp.net/",
        env_name("jwtAudience"): "env-audience",
        env_name("jwksUrl"): "https://from-env.acme-corp.net/jwks",
        "WORKFLOW_RUNS_STREAM_CONCURRENCY": "7",
        "WORKFLOW_RUNS_SNAP_START": "false",
        "WORKFLOW_RUNS_CORS_ALLOW_ORIGINS": "https://a.acme-corp.net, https://b.acme-corp.net",
    }
    config = resolve_stage_config({**cdk_json_context(), "jwtAudience": "from-c"}, "prod", environ=environ)
    assert config.jwt_issuer == "https://from-env.acme-corp.net/"
    assert config.jwt_audience == "from-c"
    assert config.stream_concurrency == 7 and config.snap_start is False
    assert config.cors_allow_origins == ("https://a.acme-corp.net", "https://b.acme-corp.net")


def test_a_nested_context_file_overrides_cdk_json_per_setting():
    merged = merge_context(
        cdk_json_context(),
        {STAGES_CONTEXT_KEY: {"prod": {**REAL, "logRetentionDays": 365}}},
    )
    config = resolve_stage_config(merged, "prod", environ={})
    assert config.log_retention_days == 365 and config.jwt_issuer == REAL["jwtIssuer"]
    assert config.retain_data is True  # the rest of prod's cdk.json settings stay


@pytest.mark.parametrize(
    ("field_type", "text", "value"),
    [
        ("int", "30", 30),
        ("int | None", "null", None),
        ("bool", "true", True),
        ("bool", "off", False),
        ("tuple[str, ...]", '["RS256"]', ["RS256"]),
        ("tuple[str, ...]", "RS256,ES256", ["RS256", "ES256"]),
        ("str | None", "https://x/", "https://x/"),
    ],
)
def test_text_values_are_read_by_the_settings_type(field_type, text, value):
    assert parse_text("s", field_type, text) == value


@pytest.mark.parametrize(("field_type", "text"), [("int", "ten"), ("bool", "maybe"), ("tuple[str, ...]", "[1")])
def test_malformed_text_values_are_refused(field_type, text):
    with pytest.raises(ConfigError):
        parse_text("s", field_type, text)


@pytest.mark.parametrize("origin", ["*", "https://app.acme-corp.net/", "app.acme-corp.net"])
def test_cors_origins_must_be_origins(origin):
    with pytest.raises(ConfigError, match="corsAllowOrigins"):
        StageConfig.from_mapping("dev", {**VALID, "corsAllowOrigins": [origin]})


def test_make_synth_passes_context_and_cdk_context_json_through(tmp_path, placeholder_deps):
    """The app itself (what `make synth` and the CDK CLI run) reads cdk.context.json, the
    environment and -c: a real prod template comes out without editing cdk.json."""
    import json

    import aws_cdk as cdk

    from infra.app import build_app, parse_context_args

    context_file = tmp_path / "cdk.context.json"
    context_file.write_text(json.dumps({"jwksUrl": REAL["jwksUrl"], "corsAllowOrigins": ["https://app.acme-corp.net"]}))
    app, stack = build_app(
        context={"stage": "prod", **parse_context_args(["-c", f"jwtIssuer={REAL['jwtIssuer']}"])},
        outdir=str(tmp_path / "out"),
        deps_layer_dir=placeholder_deps,
        env=cdk.Environment(account="123456789012", region="eu-west-1"),
        context_file=context_file,
        environ={env_name("jwtAudience"): "runs-api", env_name("jwtIssuer"): "https://loses-to-c.acme-corp.net/"},
    )
    app.synth()
    template = json.loads((tmp_path / "out" / f"{stack.stack_name}.template.json").read_text())
    envs = [
        r["Properties"]["Environment"]["Variables"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    ]
    assert {e["JWT_ISSUER"] for e in envs} == {REAL["jwtIssuer"]}
    assert {e["JWKS_URL"] for e in envs} == {REAL["jwksUrl"]}
    assert {e["JWT_AUDIENCE"] for e in envs} == {"runs-api"}
    assert {e["CORS_ALLOW_ORIGINS"] for e in envs if "CORS_ALLOW_ORIGINS" in e} == {"https://app.acme-corp.net"}


def test_the_app_exits_with_the_message_when_a_setting_is_missing(monkeypatch):
    from infra import app as app_module

    monkeypatch.delenv("CDK_CONTEXT_JSON", raising=False)
    for name in [k for k in __import__("os").environ if k.startswith("WORKFLOW_RUNS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(app_module, "cdk_context_json", lambda *_: {})
    with pytest.raises(SystemExit, match="jwtIssuer is required"):
        app_module.main(["-c", "stage=prod"])


def test_a_context_argument_without_a_value_is_refused():
    from infra.app import parse_context_args

    with pytest.raises(SystemExit):
        parse_context_args(["-c", "jwtIssuer"])


def test_an_empty_environment_variable_counts_as_unset():
    config = resolve_stage_config(cdk_json_context(), "dev", environ={env_name("jwtIssuer"): ""})
    assert config.jwt_issuer == "https://auth.dev.example.com/"
