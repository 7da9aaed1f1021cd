"""What the store hands out and takes in, besides the public models."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ..models import ActivityRun, RunInput, Status, Step, Workflow, WorkflowRun, WorkflowRunSummary, utc_now
from ..states import STANDARD


@dataclass
class RunRecord:
    """A run as stored: the public run plus what only the platform may see.

    `step_seq` counts the steps opened in the run; ending a run from outside is conditional
    on it, so no step can open between closing the open ones and ending the run."""

    run: WorkflowRun
    tenant: str
    workflow_version: int
    steps: list[Step]
    sealed_envs: str | None = None
    step_seq: int = 0
    # The run id the envs blob is bound to: this run's, or (a retry) the failed run's.
    sealed_for: str | None = None

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def status(self) -> Status:
        return self.run.status

    def with_activities(self, activities: list[ActivityRun]) -> RunRecord:
        return replace(self, run=self.run.model_copy(update={"activity_runs": activities}))


# (step index, the activity run to write, the statuses it must have now — None for a new one)
ActivityWrite = tuple[int, ActivityRun, Iterable[Status] | None]


@dataclass
class Page:
    items: list[WorkflowRunSummary]
    total: int
    # The sort key of the last item when more may follow (the service makes it a token).
    next_after: str | None = None


@dataclass
class NewRun:
    run_id: str
    tenant: str
    workflow: Workflow
    inputs: list[RunInput]
    sealed_envs: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    orchestration: str = STANDARD
    created_at: str = field(default_factory=utc_now)
    # A retry: the failed run it retries, and the run id its (copied) envs blob is bound to.
    retry_of: str | None = None
    sealed_for: str | None = None


@dataclass(frozen=True)
class StaleRun:
    """A non-terminal run the reconciler's sweep looks at (from the sparse Active index)."""

    run_id: str
    created_at: str
    orchestration: str
