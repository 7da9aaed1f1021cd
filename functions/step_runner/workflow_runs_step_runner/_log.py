"""The step runner's structured logger, built on first use (Powertools costs ~60 ms to import,
which a cold start should not pay before it has work to do)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

SERVICE = "workflow-runs-step-runner"


@lru_cache(maxsize=1)
def get_logger() -> Any:
    from aws_lambda_powertools import Logger

    # Keys are passed per call (extra=…), never appended globally: the local orchestrator
    # runs several runs on threads of one process and they must not share keys.
    return Logger(service=SERVICE)
