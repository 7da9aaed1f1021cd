"""Stage settings: the `cdk.json` context key `workflow-runs:stages`, overridden without
editing a file.

Every stage (dev, prod, …) names its JWT issuer, audience, JWKS URL and tenant claim, the
VPC endpoint its private API admits (null: no private API), log retention and the few
knobs the functions read. Each setting of the selected stage may be given, from the
weakest to the strongest source:

1. cdk.json: `workflow-runs:stages` → `<stage>` → `jwtIssuer` (committed defaults), and
   cdk.context.json (not committed) in the same nested shape;
2. the environment: `WORKFLOW_RUNS_JWT_ISSUER=…` (the setting's name, upper snake case);
3. a flat context key: `-c jwtIssuer=…` on the command line (the CDK CLI's or
   `python -m infra.app`'s), or `"jwtIssuer": "…"` at the top of cdk.context.json.

Values from the environment and `-c` are text: numbers, `true`/`false`, `null`, and lists
(comma-separated or a JSON list) are read by the setting's type. A misspelt or missing
setting fails synthesis loudly, never defaults silently to somebody's account or issuer;
prod refuses placeholder issuers (example.com, …) and names the setting to give.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aws_cdk import aws_logs as logs
from workflow_runs.states import RUN_CLASSES

STAGES_CONTEXT_KEY = "workflow-runs:stages"
ENV_PREFIX = "WORKFLOW_RUNS_"
REPO_ROOT = Path(__file__).resolve().parents[1]
# Stages that serve real users: their issuer settings must be real, not the samples.
PRODUCTION_STAGES = frozenset({"prod"})
# Hosts and words that mark a sample value (RFC 2606 names, "changeme", …).
_PLACEHOLDER_HOST = re.compile(r"(^|\.)(example\.(com|net|org)|example|invalid|test|localhost)$")
_PLACEHOLDER_WORD = re.compile(r"placeholder|changeme|change-me|todo|xxx|<[^>]*>", re.IGNORECASE)
_ISSUER_SETTINGS = ("jwt_issuer", "jwt_audience", "jwks_url")

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
    jwt_issuer: str | None
    jwt_audience: str | None
    jwks_url: str | None
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
    # CORS_ALLOW_ORIGINS of the HTTP functions, the function URL's CORS and the CORS headers
    # of API Gateway's own error answers. Empty: no CORS at all.
    cors_allow_origins: tuple[str, ...] = ()
    throttling_rate_limit: int = 50
    throttling_burst_limit: int = 100
    # The two SSE routes of the public API: each stream holds a stream function for its
    # whole life, so they get a stricter method throttle than the stage's.
    stream_throttling_rate_limit: int = 10
    stream_throttling_burst_limit: int = 20
    # Reserved concurrency (infra/sizing.py holds the defaults). The stream function's is
    # the cap on streams open at once, through the API and the function URL together.
    step_runner_concurrency: int | None = None
    projector_concurrency: int | None = None
    reconciler_concurrency: int | None = None
    stream_concurrency: int | None = None
    # Lambda SnapStart on the Python functions (api, step runner, projector, reconciler),
    # each invoked through its `live` alias.
    snap_start: bool = False
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
        if self.orchestration not in ("auto", *RUN_CLASSES):
            raise ConfigError(
                f"stage {self.name}: orchestration must be auto, standard or express, got {self.orchestration!r}"
            )
        vpce = self.private_api_vpc_endpoint_id
        if vpce is not None and not vpce.startswith("vpce-"):
            raise ConfigError(f"stage {self.name}: privateApiVpcEndpointId must look like vpce-…, got {vpce!r}")
        for name in _ISSUER_SETTINGS:
            value = getattr(self, name)
            if not value:
                raise ConfigError(f"stage {self.name}: {_camel(name)} is required; {how_to_give(name)}")
            if self.name in PRODUCTION_STAGES and is_placeholder(value):
                raise ConfigError(
                    f"stage {self.name}: {_camel(name)} is a placeholder ({value!r}); give the real one: "
                    f"{how_to_give(name)}"
                )
        for name in ("jwt_issuer", "jwks_url"):
            if not str(getattr(self, name)).startswith("https://"):
                raise ConfigError(f"stage {self.name}: {_camel(name)} must be an https:// URL")
        for origin in self.cors_allow_origins:
            if origin == "*" or not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ConfigError(
                    f"stage {self.name}: corsAllowOrigins takes origins like https://app.example.com "
                    f"(scheme and host, no path, no '*'), got {origin!r}"
                )
        for name in (
            "throttling_rate_limit",
            "throttling_burst_limit",
            "stream_throttling_rate_limit",
            "stream_throttling_burst_limit",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"stage {self.name}: {_camel(name)} must be positive")
        for name in (
            "step_runner_concurrency",
            "projector_concurrency",
            "reconciler_concurrency",
            "stream_concurrency",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"stage {self.name}: {_camel(name)} must be at least 1 (or null: the default)")

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _RETENTION[self.log_retention_days]

    @property
    def has_private_api(self) -> bool:
        return self.private_api_vpc_endpoint_id is not None

    @classmethod
    def known_settings(cls) -> dict[str, Any]:
        """camelCase name → dataclass field, for every setting a stage may give."""
        return {_camel(f.name): f for f in fields(cls) if f.name not in ("name", "extra")}

    @classmethod
    def from_mapping(cls, name: str, raw: Mapping[str, Any]) -> StageConfig:
        known = cls.known_settings()
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
        for required in _ISSUER_SETTINGS:  # absent and null alike: __post_init__ says how to give it
            values.setdefault(required, None)
        return cls(name=name, **values)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.capitalize() for part in rest)


def env_name(setting: str) -> str:
    """`jwtIssuer` (or `jwt_issuer`) → `WORKFLOW_RUNS_JWT_ISSUER`."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", setting).lower()
    return ENV_PREFIX + snake.upper()


def how_to_give(field_name: str) -> str:
    camel = _camel(field_name)
    return f"give it with `-c {camel}=…` (make synth CONTEXT='{camel}=…'), or {env_name(camel)}=…"


def is_placeholder(value: str) -> bool:
    """A sample value: a host reserved for examples (RFC 2606) or a placeholder word."""
    if _PLACEHOLDER_WORD.search(value):
        return True
    host = urlsplit(value).hostname if "://" in value else None
    return bool(host and _PLACEHOLDER_HOST.search(host))


def parse_text(setting: str, field_type: str, text: str) -> Any:
    """A setting given as text (-c, environment) → the value its type expects."""
    stripped = text.strip()
    if stripped.lower() in ("null", "none") and "None" in field_type:
        return None
    if field_type.startswith("tuple"):
        if stripped.startswith("["):
            try:
                parsed = json.loads(stripped)
            except json.JSONDecodeError as error:
                raise ConfigError(f"{setting}: not a JSON list: {text!r}") from error
            if not isinstance(parsed, list):
                raise ConfigError(f"{setting}: not a JSON list: {text!r}")
            return parsed
        return [item.strip() for item in stripped.split(",") if item.strip()]
    if field_type.startswith("bool"):
        if stripped.lower() in ("true", "1", "yes", "on"):
            return True
        if stripped.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{setting}: expected true or false, got {text!r}")
    if field_type.startswith("int"):
        try:
            return int(stripped)
        except ValueError as error:
            raise ConfigError(f"{setting}: expected a whole number, got {text!r}") from error
    return text


def overrides_from(source: Mapping[str, Any], *, origin: str) -> dict[str, Any]:
    """The stage settings named in `source` (context keys or, by their env names, the
    environment); text values are parsed by the setting's type."""
    found: dict[str, Any] = {}
    for camel, f in StageConfig.known_settings().items():
        key = env_name(camel) if origin == "environment" else camel
        if key in source:
            value = source[key]
            if origin == "environment" and value == "":
                continue  # an empty variable counts as unset (CI passes unset variables as "")
            found[camel] = parse_text(f"{camel} ({origin})", f.type, value) if isinstance(value, str) else value
    return found


def stage_config(
    stages: Mapping[str, Any] | None,
    stage: str,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> StageConfig:
    """The settings of `stage` from the context value of `workflow-runs:stages`, with
    `overrides` (camelCase settings from cdk.context.json, the environment, -c) on top."""
    if not stages:
        raise ConfigError(f"no `{STAGES_CONTEXT_KEY}` in the CDK context (cdk.json)")
    if stage not in stages:
        raise ConfigError(f"unknown stage {stage!r}; cdk.json defines {sorted(stages)}")
    return StageConfig.from_mapping(stage, {**stages[stage], **(overrides or {})})


def resolve_stage_config(
    context: Mapping[str, Any], stage: str, environ: Mapping[str, str] | None = None
) -> StageConfig:
    """The stage's settings from every source: the stages in the context (cdk.json, then a
    nested cdk.context.json), flat context keys (cdk.context.json, -c), the environment.

    The environment sits between cdk.context.json and -c: under the CDK CLI, both arrive
    merged in one context, so a flat context key wins over the environment either way.
    """
    environ = os.environ if environ is None else environ
    overrides = {**overrides_from(environ, origin="environment"), **overrides_from(context, origin="context")}
    return stage_config(context.get(STAGES_CONTEXT_KEY), stage, overrides=overrides)


def cdk_json_context(path: Path = REPO_ROOT / "cdk.json") -> dict[str, Any]:
    """The `context` block of cdk.json. The CDK CLI passes it to the app itself; a plain
    `python -m infra.app` (make synth, tests) reads it here."""
    return dict(json.loads(path.read_text()).get("context", {}))


def cdk_context_json(path: Path = REPO_ROOT / "cdk.context.json") -> dict[str, Any]:
    """cdk.context.json (not committed; the CDK CLI also caches lookups there), if any."""
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise ConfigError(f"{path.name} is not a JSON object: {error}") from error


def merge_context(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Context layers, weakest first; the stages block is merged per stage and setting."""
    merged: dict[str, Any] = {}
    stages: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == STAGES_CONTEXT_KEY and isinstance(value, Mapping):
                for stage, settings in value.items():
                    stages.setdefault(stage, {}).update(settings or {})
            else:
                merged[key] = value
    if stages:
        merged[STAGES_CONTEXT_KEY] = stages
    return merged
