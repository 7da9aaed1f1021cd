"""The step runner's structured logger: the function's Powertools Logger (service
`step-runner`), built on first use (Powertools costs ~60 ms to import, which a cold start
outside Lambda's init phase should not pay before it has work to do)."""

from __future__ import annotations

from typing import Any

from workflow_runs import telemetry

SERVICE = telemetry.STEP_RUNNER


def get_logger() -> Any:
    # Keys are passed per call (extra=…) by the runner, never appended globally here: the
    # local orchestrator runs several runs on threads of one process and they must not share
    # keys. In Lambda the instrumented handler adds the correlation keys per invocation.
    return telemetry.get_logger(SERVICE)
