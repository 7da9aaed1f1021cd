"""What each consumer of the run store sees: a Protocol with just the methods it calls, so a
reader of the step runner or the projector knows what it may do to the data without reading
`RunStore`'s mixins, and a fake for one of them implements only those. `RunStore`
implements every one (mypy checks it below). The reconciler's is `SweepStore`
(reconciler.py); the ending of a run from outside asks `ending.EndingStore`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from workflow_runs.ending import EndingStore

if TYPE_CHECKING:
    from workflow_runs.models import ActivityRun, RunError, Status, WorkflowRun
    from workflow_runs.store import RunStore
    from workflow_runs.store.leases import StreamLease
    from workflow_runs.store.records import ActivityWrite, RunRecord


class StepStore(EndingStore, Protocol):
    """The step runner: a run's record and status, its activity runs, thinking text, approvals."""

    def run_status(self, run_id: str) -> Status | None: ...

    def transition_run(self, record: RunRecord, new: Status, *, error: RunError | None = None,
                       cancel_reason: str | None = None, activities: Sequence[ActivityWrite] = (),
                       fenced: bool = False, also: Sequence[dict[str, Any]] = ()) -> RunRecord: ...

    def put_activity(self, run_id: str, step_index: int, activity: ActivityRun, *,
                     one_request: bool = False) -> bool: ...

    def finish_activity(self, run_id: str, step_index: int, activity: ActivityRun,
                        expected: Iterable[Status]) -> bool: ...

    def copy_reused(self, run_id: str, reused: Sequence[tuple[int, ActivityRun]]) -> bool: ...

    def put_thinking(self, run_id: str, activity_run_id: str, step_id: str, seq: int, text: str) -> None: ...

    def park_approval(self, record: RunRecord, index: int, parked: ActivityRun, sealed_token: str,
                      timeout_seconds: int) -> RunRecord: ...

    def replace_approval_token(self, record: RunRecord, index: int, waiting: ActivityRun, sealed_token: str,
                               timeout_seconds: int) -> bool: ...

    def get_approval(self, run_id: str, index: int) -> dict[str, Any] | None: ...

    def decide_approval(self, record: RunRecord, index: int, waiting: ActivityRun, decision: str,
                        outputs: dict[str, Any], error: RunError | None = None,
                        decision_id: str | None = None) -> RunRecord: ...

    def fail_after_decision(self, record: RunRecord, error: RunError | None) -> RunRecord: ...


class ProjectorStore(Protocol):
    """The projector: events into the run's log, a run read for its closing event, expiry."""

    def put_event(self, run_id: str, cursor: str, name: str, data: Mapping[str, Any]) -> None: ...

    def get_run(self, tenant: str, run_id: str) -> WorkflowRun: ...

    def expire_run(self, run_id: str, head: dict[str, Any]) -> bool: ...


class StreamLeases(Protocol):
    """The stream app's cap on open streams per tenant."""

    def acquire_stream_lease(self, tenant: str, limit: int, ttl_seconds: int) -> StreamLease | None: ...

    def release_stream_lease(self, lease: StreamLease) -> None: ...


if TYPE_CHECKING:
    def _run_store_is_every_port(store: RunStore) -> tuple[StepStore, ProjectorStore, StreamLeases]:
        return store, store, store
