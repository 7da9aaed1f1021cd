"""The run store's suite: runs on moto and on DynamoDB Local (the `store` fixture), passes on both."""

from __future__ import annotations

import uuid

import pytest
from workflow_runs.errors import Conflict, NotFound, TransitionRejected
from workflow_runs.models import ActivityRun, RunError, RunInput, Status, WorkflowDefinition, utc_now
from workflow_runs.store import NewRun, RunStore

DEFINITION = WorkflowDefinition.model_validate(
    {
        "name": "Summarise",
        "inputs": [{"name": "topic", "type": "string", "required": True}],
        "steps": [
            {"id": "a", "type": "transform", "config": {"output": "{{ inputs.topic }}"}},
            {"id": "b", "type": "transform", "config": {"output": "done"}},
        ],
    }
)


def new_workflow(store: RunStore, tenant: str = "t1", name: str = "Summarise"):
    return store.put_workflow(tenant, str(uuid.uuid4()), DEFINITION.model_copy(update={"name": name}))


def new_run(store: RunStore, workflow, tenant: str = "t1", **extra):
    record, created = store.create_run(
        NewRun(run_id=str(uuid.uuid4()), tenant=tenant, workflow=workflow,
               inputs=[RunInput(name="topic", value="tides")], **extra)
    )
    assert created
    return record


def test_put_workflow_bumps_version_and_keeps_created_at(store: RunStore):
    workflow = new_workflow(store)
    again = store.put_workflow("t1", workflow.id, DEFINITION)
    assert (workflow.version, again.version) == (1, 2)
    assert again.created_at == workflow.created_at
    assert store.get_workflow("t1", workflow.id).version == 2


def test_workflow_of_another_tenant_is_not_found(store: RunStore):
    workflow = new_workflow(store, tenant="t1")
    with pytest.raises(NotFound):
        store.get_workflow("t2", workflow.id)


def test_created_run_is_scheduled_with_snapshot_and_counted(store: RunStore):
    workflow = new_workflow(store)
    record = new_run(store, workflow)
    assert record.status is Status.SCHEDULED
    assert record.run.workflow_name == "Summarise" and record.workflow_version == 1
    assert [s.id for s in record.steps] == ["a", "b"]
    assert store.counts("t1", workflow.id) == {
        "scheduled": 1, "running": 0, "completed": 0, "failed": 0, "cancelled": 0, "waiting": 0}


def test_run_of_another_tenant_is_not_found(store: RunStore):
    record = new_run(store, new_workflow(store))
    with pytest.raises(NotFound):
        store.get_run("t2", record.id)
    assert store.get_run("t1", record.id).id == record.id


def test_transition_moves_counters_exactly_once(store: RunStore):
    workflow = new_workflow(store)
    record = new_run(store, workflow)
    running = store.transition_run(record, Status.RUNNING)
    with pytest.raises(TransitionRejected):
        store.transition_run(record, Status.RUNNING)  # stale: the run is no longer scheduled
    store.transition_run(running, Status.FAILED, error=RunError(message="boom", step_id="a"))
    counts = store.counts("t1", workflow.id)
    assert counts["failed"] == 1 and counts["scheduled"] == 0 and counts["running"] == 0
    assert store.get_run("t1", record.id).error.step_id == "a"


def test_terminal_status_never_changes(store: RunStore):
    record = store.transition_run(new_run(store, new_workflow(store)), Status.CANCELLED, cancel_reason="stop")
    with pytest.raises(TransitionRejected):
        store.transition_run(record, Status.RUNNING)
    assert store.get_run("t1", record.id).cancel_reason == "stop"


def test_activity_writes_stop_once_the_run_is_ended_from_outside(store: RunStore):
    record = new_run(store, new_workflow(store))
    now = utc_now()
    activity = ActivityRun(id=str(uuid.uuid4()), step_id="a", step_name=None, status=Status.RUNNING,
                           attempt=1, created_at=now, updated_at=now)
    assert store.put_activity(record.id, 0, activity)
    store.cancel_run(store.get_run_record(record.id))
    done = activity.model_copy(update={"status": Status.COMPLETED, "outputs": {"value": 1}})
    assert not store.finish_activity(record.id, 0, done, expected=[Status.RUNNING])
    assert not store.put_activity(record.id, 0, activity.model_copy(update={"attempt": 2}))
    assert [a.status for a in store.get_run("t1", record.id).activity_runs] == [Status.CANCELLED]


def test_a_step_opened_after_the_read_fences_off_an_ending_from_outside(store: RunStore):
    # Given a cancel that read the run before a step opened
    record = new_run(store, new_workflow(store))
    stale = store.get_run_record(record.id)
    now = utc_now()
    straggler = ActivityRun(id=str(uuid.uuid4()), step_id="a", step_name=None, status=Status.RUNNING,
                            attempt=1, created_at=now, updated_at=now)
    assert store.put_activity(record.id, 0, straggler)
    # When it ends the run from what it read, it loses; read again, it closes the step too
    with pytest.raises(TransitionRejected):
        store.cancel_run(stale)
    assert store.get_run("t1", record.id).status is Status.SCHEDULED
    store.cancel_run(store.get_run_record(record.id))
    run = store.get_run("t1", record.id)
    assert run.status is Status.CANCELLED
    assert [a.status for a in run.activity_runs] == [Status.CANCELLED]


def test_list_is_newest_first_without_gaps_or_repeats(store: RunStore):
    workflow = new_workflow(store)
    ids = [new_run(store, workflow).id for _ in range(7)]
    seen = []
    for page in (1, 2, 3):
        result = store.list_runs("t1", workflow_id=workflow.id, offset=(page - 1) * 3, limit=3)
        assert result.total == 7
        seen += [r.id for r in result.items]
    assert seen == list(reversed(ids))


@pytest.mark.parametrize("filters", [{}, {"workflow": True}, {"status": Status.SCHEDULED}, {"search": "MARIS"}])
def test_cursor_pages_walk_every_shard_newest_first_and_end_without_a_cursor(store: RunStore, filters: dict):
    workflow = new_workflow(store)
    ids = [new_run(store, workflow).id for _ in range(11)]
    query = {"workflow_id": workflow.id if filters.get("workflow") else None, "status": filters.get("status"),
             "search": filters.get("search")}
    seen, after, pages = [], None, 0
    while True:
        page = store.list_runs("t1", limit=4, after=after, **query)
        assert page.total == 11
        seen += [r.id for r in page.items]
        pages += 1
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == list(reversed(ids))
    assert pages == 3  # 4 + 4 + 3: the last page carries no cursor


def test_list_filters_by_status_and_tenant(store: RunStore):
    workflow = new_workflow(store)
    first, second = new_run(store, workflow), new_run(store, workflow)
    store.transition_run(first, Status.RUNNING)
    new_run(store, new_workflow(store, tenant="t2"), tenant="t2")
    running = store.list_runs("t1", status=Status.RUNNING)
    assert [r.id for r in running.items] == [first.id] and running.total == 1
    everything = store.list_runs("t1")
    assert {r.id for r in everything.items} == {first.id, second.id} and everything.total == 2


def test_search_matches_workflow_name_case_insensitively_across_workflows(store: RunStore):
    alpha, beta, other = (new_workflow(store, name=n) for n in ("Alpha report", "Beta REPORT", "Cleanup"))
    runs = [new_run(store, wf).id for wf in (alpha, beta, other, alpha)]
    result = store.list_runs("t1", search="report", limit=10)
    assert result.total == 3
    assert [r.id for r in result.items] == [runs[3], runs[1], runs[0]]
    assert store.list_runs("t2", search="report").total == 0


def test_non_terminal_runs_of_a_workflow(store: RunStore):
    workflow = new_workflow(store)
    open_run, done_run = new_run(store, workflow), new_run(store, workflow)
    store.transition_run(done_run, Status.CANCELLED)
    assert store.non_terminal_run_ids("t1", workflow.id) == [open_run.id]


def test_idempotency_key_returns_first_run_and_rejects_other_body(store: RunStore):
    workflow = new_workflow(store)
    body = "v1.fingerprint-of-the-first-request"  # the service computes it; the store compares strings
    first = new_run(store, workflow, idempotency_key="k1", request_hash=body)
    repeat, created = store.create_run(NewRun(run_id=str(uuid.uuid4()), tenant="t1", workflow=workflow, inputs=[],
                                              idempotency_key="k1", request_hash=body))
    assert not created and repeat.id == first.id
    with pytest.raises(Conflict):
        store.create_run(NewRun(run_id=str(uuid.uuid4()), tenant="t1", workflow=workflow, inputs=[],
                                idempotency_key="k1", request_hash="other"))
    assert store.counts("t1", workflow.id)["scheduled"] == 1


def test_event_log_reads_after_cursor_in_order(store: RunStore):
    for cursor in ("0002", "0001", "0003"):
        store.put_event("r1", cursor, "workflow-run", {"n": cursor})
    store.put_event("r1", "0002", "workflow-run", {"n": "0002"})  # redelivered: same event
    assert [c for c, _, _ in store.events_after("r1", None)] == ["0001", "0002", "0003"]
    assert [d["n"] for _, _, d in store.events_after("r1", "0001")] == ["0002", "0003"]


def test_stale_runs_come_from_the_active_index(store: RunStore):
    workflow = new_workflow(store)
    stale, ended = new_run(store, workflow), new_run(store, workflow)
    store.transition_run(ended, Status.CANCELLED)
    [found] = store.stale_runs("9999")
    assert (found.run_id, found.created_at, found.orchestration) == (stale.id, stale.run.created_at, "standard")
