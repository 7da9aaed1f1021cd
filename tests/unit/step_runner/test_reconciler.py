"""The reconciler settles runs whose execution ended without them, from events and by sweeping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from workflow_runs.models import ActivityRun, Status, WorkflowDefinition, utc_now
from workflow_runs.store import NewRun, RunStore
from workflow_runs_step_runner.reconciler import reconcile

TENANT = "t1"
DEFINITION = WorkflowDefinition.model_validate({
    "name": "Nightly",
    "steps": [{"id": "fetch", "type": "transform", "config": {"output": "x"}},
              {"id": "pause", "type": "wait", "config": {"seconds": 60}}],
})
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class FakeOrchestrator:
    def __init__(self, statuses: dict[str, str | None] | None = None):
        self.statuses = statuses or {}
        self.described: list[str] = []

    def describe(self, run_id: str) -> str | None:
        self.described.append(run_id)
        return self.statuses.get(run_id)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_run(store: RunStore, *, status: Status = Status.RUNNING, created_at: datetime | None = None,
            open_step: bool = False, orchestration: str = "standard") -> str:
    workflow = store.put_workflow(TENANT, str(uuid.uuid4()), DEFINITION)
    run_id = str(uuid.uuid4())
    record, _ = store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow, inputs=[],
                                        created_at=iso(created_at or NOW), orchestration=orchestration))
    if status is not Status.SCHEDULED:
        record = store.transition_run(record, Status.RUNNING)
    if open_step:
        now = utc_now()
        store.put_activity(run_id, 0, ActivityRun(id=str(uuid.uuid4()), step_id="fetch", step_name=None,
                                                  status=Status.RUNNING, attempt=1, created_at=now, updated_at=now))
    if status not in (Status.SCHEDULED, Status.RUNNING):
        store.transition_run(record, status)
    return run_id


def status_change(run_id: str, status: str) -> dict:
    return {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {"name": run_id, "status": status,
                   "executionArn": f"arn:aws:states:us-east-1:123456789012:execution:runs:{run_id}",
                   "error": "States.Runtime", "cause": "secret-looking free text"},
    }


SCHEDULED_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


def settle_event(store: RunStore, run_id: str, status: str) -> dict:
    return reconcile(status_change(run_id, status), store=store, orchestrator=FakeOrchestrator())


def test_failed_execution_fails_the_run_and_its_open_step(moto_store: RunStore):
    run_id = new_run(moto_store, open_step=True)

    assert settle_event(moto_store, run_id, "FAILED") == {"settled": 1}

    run = moto_store.get_run(TENANT, run_id)
    assert run.status is Status.FAILED
    assert (run.error.message, run.error.step_id) == ("the run's execution failed", "fetch")
    assert [a.status for a in run.activity_runs] == [Status.FAILED]


def test_timed_out_execution_says_so(moto_store: RunStore):
    run_id = new_run(moto_store)

    settle_event(moto_store, run_id, "TIMED_OUT")

    assert moto_store.get_run(TENANT, run_id).error.message == "the run's execution timed out"


def test_aborted_execution_cancels_the_run_and_closes_its_open_step(moto_store: RunStore):
    run_id = new_run(moto_store, open_step=True)

    settle_event(moto_store, run_id, "ABORTED")

    run = moto_store.get_run(TENANT, run_id)
    assert (run.status, run.cancel_reason, run.error) == (Status.CANCELLED, "the run's execution was stopped", None)
    assert [a.status for a in run.activity_runs] == [Status.CANCELLED]


@pytest.mark.parametrize("ended", [Status.COMPLETED, Status.CANCELLED])
def test_event_for_an_ended_run_changes_nothing(moto_store: RunStore, ended: Status):
    run_id = new_run(moto_store, status=ended)

    assert settle_event(moto_store, run_id, "FAILED") == {"settled": 0}

    run = moto_store.get_run(TENANT, run_id)
    assert (run.status, run.error) == (ended, None)


def test_repeated_event_settles_once(moto_store: RunStore):
    run_id = new_run(moto_store)

    results = [settle_event(moto_store, run_id, "FAILED")["settled"] for _ in range(2)]

    assert results == [1, 0]
    assert moto_store.counts(TENANT, moto_store.get_run(TENANT, run_id).workflow_id)["failed"] == 1


def test_succeeded_status_or_unknown_run_is_ignored(moto_store: RunStore):
    run_id = new_run(moto_store)

    assert settle_event(moto_store, run_id, "SUCCEEDED") == {"settled": 0}
    assert settle_event(moto_store, str(uuid.uuid4()), "FAILED") == {"settled": 0}
    assert moto_store.get_run(TENANT, run_id).status is Status.RUNNING


def test_sweep_closes_old_runs_whose_execution_is_not_running(moto_store: RunStore):
    old = NOW - timedelta(hours=1)
    still_running = new_run(moto_store, created_at=old)
    never_started = new_run(moto_store, status=Status.SCHEDULED, created_at=old)
    aborted = new_run(moto_store, created_at=old)
    lost_failure = new_run(moto_store, created_at=old, open_step=True)
    recent = new_run(moto_store, created_at=NOW - timedelta(minutes=1))
    finished = new_run(moto_store, status=Status.COMPLETED, created_at=old)
    orchestrator = FakeOrchestrator({still_running: "RUNNING", aborted: "ABORTED", lost_failure: "FAILED"})

    result = reconcile(SCHEDULED_EVENT, store=moto_store, orchestrator=orchestrator,
                       stale_after_seconds=900, now=NOW)

    assert result == {"checked": 4, "settled": 3}
    assert set(orchestrator.described) == {still_running, never_started, aborted, lost_failure}
    status = {r: moto_store.get_run(TENANT, r) for r in (still_running, never_started, aborted, lost_failure,
                                                         recent, finished)}
    assert status[still_running].status is Status.RUNNING
    assert (status[never_started].status, status[never_started].error.message) == (
        Status.FAILED, "the run's execution never started")
    assert status[aborted].status is Status.CANCELLED
    assert (status[lost_failure].status, status[lost_failure].error.step_id) == (Status.FAILED, "fetch")
    assert status[recent].status is Status.RUNNING and status[finished].status is Status.COMPLETED


def test_sweep_goes_on_when_one_describe_fails(moto_store: RunStore):
    old = NOW - timedelta(hours=1)
    broken, lost = new_run(moto_store, created_at=old), new_run(moto_store, created_at=old)

    class Flaky(FakeOrchestrator):
        def describe(self, run_id: str) -> str | None:
            if run_id == broken:
                raise RuntimeError("throttled")
            return None

    result = reconcile(SCHEDULED_EVENT, store=moto_store, orchestrator=Flaky(), stale_after_seconds=900, now=NOW)

    assert result == {"checked": 2, "settled": 1}
    assert moto_store.get_run(TENANT, broken).status is Status.RUNNING
    assert moto_store.get_run(TENANT, lost).status is Status.FAILED


def test_sweep_fails_an_express_run_open_past_any_express_execution_without_describing_it(moto_store: RunStore):
    # Given Express runs still open: one older than an Express execution can live, one young
    dead = new_run(moto_store, orchestration="express", open_step=True, created_at=NOW - timedelta(seconds=400))
    young = new_run(moto_store, orchestration="express", created_at=NOW - timedelta(seconds=200))
    standard = new_run(moto_store, created_at=NOW - timedelta(seconds=400))  # younger than its 900 s
    orchestrator = FakeOrchestrator()

    # When the sweep runs
    result = reconcile(SCHEDULED_EVENT, store=moto_store, orchestrator=orchestrator, stale_after_seconds=900, now=NOW)

    # Then the old Express run failed with its open step, and nobody asked Step Functions
    assert result == {"checked": 1, "settled": 1}
    assert orchestrator.described == []
    run = moto_store.get_run(TENANT, dead)
    assert (run.status, run.error.step_id) == (Status.FAILED, "fetch")
    assert "Express" in run.error.message
    assert [a.status for a in run.activity_runs] == [Status.FAILED]
    assert moto_store.get_run(TENANT, young).status is Status.RUNNING
    assert moto_store.get_run(TENANT, standard).status is Status.RUNNING
