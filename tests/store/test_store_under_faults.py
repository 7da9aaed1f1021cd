"""Every write of the store on a DynamoDB that conflicts and throttles as AWS does under load.

DynamoDB Local never cancels a transaction for TransactionConflict and never throttles, so
each write path (workflow versions, run creation with an idempotency claim, status moves with
their counter shards, steps opened and closed, thinking, ending from outside, the event log)
runs here through `workflow_runs_dev.faults.FaultInjector` at high rates, from several threads
of one tenant at once. A caller that meets `Unavailable` tries again, as the state machine, the
API's client and the projector's batch retry do. What is stored must be exactly what a calm
table would hold: no transition lost, none twice, counts equal to a recount.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from workflow_runs.errors import Unavailable
from workflow_runs.models import ActivityRun, RunInput, Status, WorkflowDefinition, utc_now
from workflow_runs.store import NewRun

pytestmark = pytest.mark.dynamodb_local

T = TypeVar("T")
TENANT = "faulty"
RUNS = 24
DEFINITION = WorkflowDefinition.model_validate(
    {"name": "Faulty", "steps": [{"id": "a", "type": "transform", "config": {"output": "x"}}]})


def until_done(call: Callable[[], T], tries: int = 20) -> T:
    """What every caller of the store does with Unavailable: nothing was written, so try again."""
    for _ in range(tries - 1):
        try:
            return call()
        except Unavailable:
            continue
    return call()


def test_every_write_path_under_conflicts_and_throttles_stores_exactly_what_a_calm_table_would(faulty):
    store, faults = faulty
    workflow_id = str(uuid.uuid4())
    until_done(lambda: store.put_workflow(TENANT, workflow_id, DEFINITION))
    workflow = until_done(lambda: store.put_workflow(TENANT, workflow_id, DEFINITION))  # version 2
    assert workflow.version == 2

    def one_run(n: int) -> str:
        run_id, key = str(uuid.uuid4()), f"key-{n}"
        new = NewRun(run_id=run_id, tenant=TENANT, workflow=workflow, inputs=[RunInput(name="n", value=n)],
                     idempotency_key=key, request_hash="same")
        record, _ = until_done(lambda: store.create_run(new))
        # a repeat of the same request finds the first run, whatever the table did meanwhile
        assert until_done(lambda: store.create_run(new))[0].id == run_id
        now = utc_now()
        step = ActivityRun(id=str(uuid.uuid4()), step_id="a", step_name=None, status=Status.RUNNING, attempt=1,
                           created_at=now, updated_at=now)
        record = until_done(lambda: store.transition_run(record, Status.RUNNING, activities=[(0, step, None)]))
        until_done(lambda: store.put_thinking(run_id, step.id, "a", 1, "thinking"))
        if n % 3 == 0:  # cancelled mid-step: the open step closes first, then the run
            until_done(lambda: store.cancel_run(store.get_run_record(run_id), "enough"))
        else:
            done = step.model_copy(update={"status": Status.COMPLETED, "outputs": {"n": n}})
            assert until_done(lambda: store.finish_activity(run_id, 0, done, [Status.RUNNING]))
            until_done(lambda: store.transition_run(record, Status.COMPLETED))
        until_done(lambda: store.put_event(run_id, f"{n:06d}", "workflow-run", {"n": n}))
        return run_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        run_ids = list(pool.map(one_run, range(RUNS)))

    injected = faults.stats
    assert injected["conflict_random"] + injected["conflict_overlap"] > 0
    assert injected["throttle_provisioned"] + injected["throttle_throttling"] > 0
    assert store.db.retried, "the store retried nothing: the faults never reached it"
    with faults.suspended():
        runs = [store.get_run(TENANT, run_id) for run_id in run_ids]
        recount = Counter(run.status.value for run in runs)
        counts = store.counts(TENANT, workflow_id)
        listed = store.list_runs(TENANT, workflow_id=workflow_id, limit=100)
        events = [store.events_after(run_id, None) for run_id in run_ids]
    expected = Counter({"cancelled": sum(1 for n in range(RUNS) if n % 3 == 0)})
    expected["completed"] = RUNS - expected["cancelled"]
    assert recount == expected
    assert {k: v for k, v in counts.items() if v} == dict(expected)
    assert listed.total == RUNS and sorted(r.id for r in listed.items) == sorted(run_ids)
    for n, run in enumerate(runs):
        want = Status.CANCELLED if n % 3 == 0 else Status.COMPLETED
        assert [a.status for a in run.activity_runs] == [want], run
    assert all(len(log) == 1 for log in events)
