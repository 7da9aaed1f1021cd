"""Settings from the environment, built once by a cached factory (never at import time)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from workflow_runs.origins import ANY_ORIGIN_REFUSED, checked_origins
from workflow_runs.states import RunClass


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


class Settings(BaseModel, frozen=True):
    runs_table: str
    events_table: str
    dynamodb_endpoint_url: str | None = None
    state_machine_arn: str | None = None
    # The Express state machine (the same definition); runs bound to end well inside
    # Express's five minutes go there when `orchestration` allows it.
    express_state_machine_arn: str | None = None
    orchestration: Literal["auto"] | RunClass = "auto"  # auto: by the run class rules (run_class.py)

    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_tenant_claim: str = "tenant_id"
    jwt_algorithms: tuple[str, ...] = ("RS256", "ES256")
    jwt_leeway_seconds: int = 30
    # API Gateway ids of the private (VPC-only) REST API: a request whose request context
    # names one of these arrived through the private API and is internal.
    private_api_ids: tuple[str, ...] = ()

    execute_wait_seconds: float = Field(default=25.0, ge=0, le=28)
    max_body_bytes: int = 256 * 1024
    # Browser origins allowed to call the APIs (CORS); empty: no CORS headers at all; `*` is refused.
    cors_allow_origins: tuple[str, ...] = ()

    llm_provider: str = "echo"
    bedrock_model_id: str = "anthropic.claude-3-7-sonnet-20250219-v1:0"
    http_step_allowed_hosts: tuple[str, ...] = ()
    http_step_timeout_seconds: float = 10.0

    envs_kms_key_id: str | None = None
    # Seals approval task tokens (their own key: the API function may decrypt tokens, never envs).
    tokens_kms_key_id: str | None = None
    # A KMS HMAC key: idempotency fingerprints are keyed with a key derived from it.
    fingerprint_kms_key_id: str | None = None
    # base64 AES-256 key, one-machine runs only; seals envs and derives the fingerprint key.
    local_secret_key: str | None = None

    sse_ping_seconds: float = 9.0
    sse_poll_min_seconds: float = 0.05
    sse_poll_max_seconds: float = 1.0
    # What every SSE response begins with (`retry: <ms>`): how long a client waits to reconnect.
    sse_retry_ms: int = Field(default=3000, ge=0, le=3_600_000)
    # A stream ends (without a closing event; the client resumes) after this long. In AWS it
    # must stay below the stream function's timeout (Lambda's ceiling is 900 s).
    stream_max_seconds: float = Field(default=840.0, gt=0, le=900)
    # Open streams per tenant, counted across every instance (leases in the runs table).
    stream_max_per_tenant: int = Field(default=100, ge=1, le=1000)
    # An ended run, its steps and its events are deleted this long after they were written
    # (the run's head: after it ended), by DynamoDB's TTL; a run not ended never expires.
    run_retention_days: int = Field(default=90, ge=1, le=3650)
    # The reconciler's sweep looks at non-terminal runs created longer ago than this.
    reconcile_after_seconds: int = Field(default=900, ge=60)

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # `*` is refused here, whoever reads the settings (docs/security.md, issue 28): with
        # it, a page on any origin could drive a browser's or the dev server's credentials.
        if any(origin.strip() == "*" for origin in value):
            raise ValueError(f"CORS_ALLOW_ORIGINS: {ANY_ORIGIN_REFUSED}")
        return checked_origins(value)

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ | None = None) -> Settings:
        env = os.environ if env is None else env
        missing = [name for name in ("RUNS_TABLE", "EVENTS_TABLE") if not env.get(name)]
        if missing:
            raise RuntimeError(f"missing required settings: {', '.join(missing)}")
        values: dict[str, object] = {}
        for field in cls.model_fields:
            raw = env.get(field.upper())
            if raw is None or raw == "":
                continue
            values[field] = _csv(raw) if cls.model_fields[field].annotation == tuple[str, ...] else raw
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
