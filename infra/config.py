"""Stage settings, read from the `cdk.json` context key `workflow-runs:stages`.

Every stage (dev, prod, …) names its JWT issuer, audience, JWKS URL and tenant claim, the
VPC endpoint its private API admits (null: no private API), log retention and the few
knobs the functions read. A misspelt or missing setting fails synthesis loudly, never
defaults silently to somebody's account or issuer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from aws_cdk import aws_logs as logs

STAGES_CONTEXT_KEY = "workflow-runs:stages"
REPO_ROOT = Path(__file__).resolve().parents[1]

_RETENTION: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


class ConfigError(ValueError):
    """The stage settings in cdk.json are missing or malformed."""


@dataclass(frozen=True)
class StageConfig:
    """One stage's settings; the camelCase keys in cdk.json map to these fields."""

    name: str
    jwt_issuer: str
    jwt_audience: str
    jwks_url: str
    jwt_tenant_claim: str = "tenant_id"
    jwt_algorithms: tuple[str, ...] = ("RS256", "ES256")
    # The interface VPC endpoint (execute-api) the private REST API admits; None: no private API.
    private_api_vpc_endpoint_id: str | None = None
    log_retention_days: int = 30
    # prod keeps its tables and keys when the stack goes (RETAIN + deletion protection).
    retain_data: bool = False
    account: str | None = None
    region: str | None = None
    execute_wait_seconds: int = 25
    # The run class: auto (Express for runs bound to end within its budget), standard, express.
    orchestration: str = "auto"
    llm_provider: str = "bedrock"
    bedrock_model_id: str = "anthropic.claude-3-7-sonnet-20250219-v1:0"
    http_step_allowed_hosts: tuple[str, ...] = ()
    cors_allowed_origins: tuple[str, ...] = ("*",)
    throttling_rate_limit: int = 50
    throttling_burst_limit: int = 100
    powertools_log_level: str = "INFO"
    alarm_email: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.log_retention_days not in _RETENTION:
            raise ConfigError(
                f"stage {self.name}: logRetentionDays must be one of {sorted(_RETENTION)}, got {self.log_retention_days}"
            )
        # API Gateway gives up on an integration after 29 s; the blocking execute must answer first.
        if not 0 < self.execute_wait_seconds <= 25:
            raise ConfigError(
                f"stage {self.name}: executeWaitSeconds must be in 1..25, got {self.execute_wait_seconds}"
            )
        if self.orchestration not in ("auto", "standard", "express"):
            raise ConfigError(
                f"stage {self.name}: orchestration must be auto, standard or express, got {self.orchestration!r}"
            )
        vpce = self.private_api_vpc_endpoint_id
        if vpce is not None and not vpce.startswith("vpce-"):
            raise ConfigError(f"stage {self.name}: privateApiVpcEndpointId must look like vpce-…, got {vpce!r}")
        for name in ("jwt_issuer", "jwt_audience", "jwks_url"):
            if not getattr(self, name):
                raise ConfigError(f"stage {self.name}: {_camel(name)} is required")

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _RETENTION[self.log_retention_days]

    @property
    def has_private_api(self) -> bool:
        return self.private_api_vpc_endpoint_id is not None

    @classmethod
    def from_mapping(cls, name: str, raw: Mapping[str, Any]) -> StageConfig:
        known = {_camel(f.name): f for f in fields(cls) if f.name not in ("name", "extra")}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"stage {name}: unknown settings {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            f = known[key]
            if value is not None and f.type.startswith("tuple"):
                if not isinstance(value, list):
                    raise ConfigError(f"stage {name}: {key} must be a list")
                value = tuple(value)
            values[f.name] = value
        try:
            return cls(name=name, **values)
        except TypeError as error:  # a required setting is missing
            raise ConfigError(f"stage {name}: {error}") from error


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.capitalize() for part in rest)


def stage_config(stages: Mapping[str, Any] | None, stage: str) -> StageConfig:
    """The settings of `stage` from the context value of `workflow-runs:stages`."""
    if not stages:
        raise ConfigError(f"no `{STAGES_CONTEXT_KEY}` in the CDK context (cdk.json)")
    if stage not in stages:
        raise ConfigError(f"unknown stage {stage!r}; cdk.json defines {sorted(stages)}")
    return StageConfig.from_mapping(stage, stages[stage])


def cdk_json_context(path: Path = REPO_ROOT / "cdk.json") -> dict[str, Any]:
    """The `context` block of cdk.json. The CDK CLI passes it to the app itself; a plain
    `python -m infra.app` (make synth, tests) reads it here."""
    return dict(json.loads(path.read_text()).get("context", {}))
