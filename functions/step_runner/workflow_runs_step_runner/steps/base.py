"""The one small interface every step type implements.

A new step type is one module here and one line in `workflow_runs.models.STEP_KINDS`
(where the step runner's registry finds it and a PUT checks its config).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from workflow_runs.models import Step
from workflow_runs.settings import Settings


@dataclass
class StepContext:
    run_id: str
    activity_run_id: str
    step: Step
    attempt: int  # 1-indexed
    inputs: dict[str, Any]
    steps: dict[str, dict[str, Any]]  # earlier step id -> {"outputs": {...}}
    env: dict[str, str]  # the run's decrypted envs; never stored or logged as they are
    settings: Settings
    # Streams reasoning text as it arrives; the runner masks it and writes it to the run.
    emit_thinking: Callable[[str], None] = field(default=lambda text: None)


@dataclass
class StepOutcome:
    outputs: dict[str, Any] = field(default_factory=dict)
    # Set by `wait`: the orchestrator waits this long, the step completes afterwards.
    wait_seconds: int | None = None
    # Set by `approval`: the runner parks the step with the state machine's task token; it
    # waits this long for a decision.
    approval_timeout_seconds: int | None = None


class StepError(Exception):
    """A step failed. `retryable` errors are retried by the orchestrator while attempts remain.
    `busy`: a service the step called was throttled or answered 5xx past its client's retries:
    no fault of the step's, so the attempt fails and the state machine makes the invocation
    again (its `Unavailable` retrier), whatever attempts the step's own retry allows."""

    def __init__(self, message: str, *, retryable: bool = False, busy: bool = False):
        super().__init__(message)
        self.message = message
        self.retryable = retryable or busy
        self.busy = busy


class StepType(Protocol):
    name: str

    def run(self, ctx: StepContext) -> StepOutcome: ...
