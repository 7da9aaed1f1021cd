"""What a retry of a failed run inherits: pure rules, no I/O (the service and the store act on them).

A retry runs the same workflow version with the same inputs and envs. The steps the failed run
completed, in order from the first, are not run again: their activity runs are copied into the
retry (`reused`), so the step runner — which always runs a run's first step without a
completed activity run — starts it at the step that failed. Nothing in the state machine or
the local orchestrator changes: both only carry the run id and ask the runner for the next step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from .models import ActivityRun, Status, Step, approval_reused_on_retry
from .states import APPROVAL_STEP
from .store import RunRecord


@dataclass(frozen=True)
class RetryPlan:
    # (step index, the activity run as the retry holds it), in step order
    reused: list[tuple[int, ActivityRun]]
    # The first step the retry runs.
    start_index: int


def reused_activity_id(run_id: str, step_index: int, attempt: int) -> str:
    """Deterministic, so a repeated request that resumes the start copies the same items; in a
    name space of its own, apart from the ids the step runner gives the attempts it opens."""
    return str(uuid.uuid5(uuid.UUID(run_id), f"reused:{step_index}:{attempt}"))


def plan_retry(source: RunRecord, retry_id: str) -> RetryPlan:
    """Which of `source`'s completed steps the retry `retry_id` reuses, and where it starts.

    Reused: every step from the first on that has a completed activity run (its latest
    completed attempt), up to the first that has none, or the first approval step whose
    config does not say `reuseOnRetry: true` (that one is asked again). If every step completed (the run
    failed after its last step, e.g. it was failed from outside in a race), the last step
    runs again, so the retry has a step to run and ends through the step runner as usual."""
    latest: dict[str, ActivityRun] = {}
    for activity in source.run.activity_runs:
        if activity.status is Status.COMPLETED:
            held = latest.get(activity.step_id)
            if held is None or activity.attempt > held.attempt:
                latest[activity.step_id] = activity
    reused: list[tuple[int, ActivityRun]] = []
    for index, step in enumerate(source.steps):
        done = latest.get(step.id)
        if done is None or index == len(source.steps) - 1:
            break
        if step.type == APPROVAL_STEP and not approval_reused_on_retry(step):
            break  # a retry asks again: an earlier decision does not gate a new attempt
        reused.append((index, done.model_copy(update={
            "id": reused_activity_id(retry_id, index, done.attempt), "reused": True})))
    return RetryPlan(reused=reused, start_index=len(reused))


def steps_to_run(source: RunRecord, plan: RetryPlan) -> list[Step]:
    """The steps the retry will run (what its run class is chosen from)."""
    return list(source.steps[plan.start_index:])


def retry_fingerprint_body(run_id: str) -> dict[str, Any]:
    """What an idempotent retry's fingerprint covers: the run it retries (there is no body).
    Keyed apart from any execute body, so one Idempotency-Key cannot serve both."""
    return {"retryOf": run_id}
