"""The approval writes (park, a new token, decide, the run's end after a rejection) on a
DynamoDB that conflicts and throttles as AWS does under load (`FaultInjector`), several
deciders per run at once: each approval is decided exactly once, its step and its run agree
with that decision, and the counters equal a recount."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from workflow_runs.errors import TransitionRejected
from workflow_runs.models import ActivityRun, RunError, Status, WorkflowDefinition, utc_now
from workflow_runs.store import NewRun
from workflow_runs.store.approvals import APPROVED, REJECTED, TIMED_OUT

from tests.api.conftest import RecordingOrchestrator
from tests.store.test_store_under_faults import until_done

pytestmark = pytest.mark.dynamodb_local

TENANT = "faulty-approvals"
RUNS = 12
DEFINITION = WorkflowDefinition.model_validate(
    {"name": "Approvals", "steps": [{"id": "review", "type": "approval", "config": {"prompt": "ok?"}}]})
DECISIONS = (APPROVED, REJECTED, TIMED_OUT)


def test_each_approval_is_decided_once_under_conflicts_and_throttles(faulty):
    store, faults = faulty
    workflow_id = str(uuid.uuid4())
    workflow = until_done(lambda: store.put_workflow(TENANT, workflow_id, DEFINITION))

    def one_run(n: int) -> tuple[str, str]:
        run_id = str(uuid.uuid4())
        record, _ = until_done(lambda: store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow,
                                                               inputs=[])))
        now = utc_now()
        step = ActivityRun(id=str(uuid.uuid4()), step_id="review", step_name=None, status=Status.RUNNING,
                           attempt=1, created_at=now, updated_at=now)
        record = until_done(lambda: store.transition_run(record, Status.RUNNING, activities=[(0, step, None)]))
        parked = step.model_copy(update={"status": Status.WAITING, "outputs": {"prompt": "ok?"}})
        record = until_done(lambda: store.park_approval(record, 0, parked, "sealed-1", 60))
        record = record.with_activities([parked])
        assert until_done(lambda: store.replace_approval_token(record, 0, parked, "sealed-2", 60))

        winners: list[str] = []
        barrier = threading.Barrier(3)

        def decide(decision: str) -> None:
            barrier.wait()
            try:
                error = None if decision == APPROVED else RunError(message=decision, step_id="review")
                decision_id = str(uuid.uuid4())  # one per decision, kept through its retries
                until_done(lambda: store.decide_approval(record, 0, parked, decision, {"d": decision}, error=error,
                                                         decision_id=decision_id))
                winners.append(decision)
            except TransitionRejected:
                pass

        threads = [threading.Thread(target=decide, args=(d,)) for d in DECISIONS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1, winners
        return run_id, winners[0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one_run, range(RUNS)))

    injected = faults.stats
    assert injected["conflict_random"] + injected["conflict_overlap"] > 0
    assert injected["throttle_provisioned"] + injected["throttle_throttling"] > 0
    with faults.suspended():
        for run_id, winner in results:
            run = store.get_run(TENANT, run_id)
            approval = store.get_approval(run_id, 0)
            assert approval is not None and approval["decision"] == winner and approval["token"] == "sealed-2"
            [step] = run.activity_runs
            assert step.outputs == {"d": winner}
            if winner == APPROVED:
                assert (run.status, step.status) == (Status.RUNNING, Status.COMPLETED)
            else:
                assert (run.status, step.status) == (Status.FAILED, Status.FAILED)
                assert run.error is not None and run.error.message == winner
        counts = store.counts(TENANT, workflow_id)
    recount = Counter("running" if winner == APPROVED else "failed" for _, winner in results)
    assert {k: v for k, v in counts.items() if v} == dict(recount)


def test_a_repeated_approve_under_conflicts_and_throttles_resends_the_stored_approval_and_writes_nothing(
        faulty, local_settings):
    from workflow_runs.approvals import DecisionRequest, decide, seal_token
    from workflow_runs.errors import Conflict, Unavailable
    from workflow_runs.secrets import get_sealer

    store, faults = faulty
    sealer = get_sealer(local_settings)
    workflow = until_done(lambda: store.put_workflow(TENANT, str(uuid.uuid4()), DEFINITION))
    run_id = str(uuid.uuid4())
    record, _ = until_done(lambda: store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow, inputs=[])))
    now = utc_now()
    step = ActivityRun(id=str(uuid.uuid4()), step_id="review", step_name=None, status=Status.RUNNING,
                       attempt=1, created_at=now, updated_at=now)
    record = until_done(lambda: store.transition_run(record, Status.RUNNING, activities=[(0, step, None)]))
    parked = step.model_copy(update={"status": Status.WAITING, "outputs": {"prompt": "ok?"}})
    until_done(lambda: store.park_approval(record, 0, parked, seal_token(sealer, run_id, "review", "TOKEN"), 60))

    orchestrator = RecordingOrchestrator()  # records every callback; none moves the run on

    def call() -> object:
        return decide(store, orchestrator, lambda: sealer, TENANT, run_id, "review", approve=True,  # type: ignore[arg-type]
                      decided_by="ana", request=DecisionRequest())

    until_done(call)
    with faults.suspended():
        before = store.get_run(TENANT, run_id)
    repeats = 0
    for _ in range(6):  # each repeat: a 409 and the stored approval sent again, or Unavailable (try again)
        try:
            call()
        except Conflict as exc:
            assert "decided already" in str(exc)
            repeats += 1
        except Unavailable:
            pass
    injected = faults.stats
    assert injected["conflict_random"] + injected["throttle_provisioned"] + injected["throttle_throttling"] > 0
    assert repeats > 0 and [token for _, token, _ in orchestrator.callbacks] == ["TOKEN"] * (repeats + 1)
    with faults.suspended():
        after = store.get_run(TENANT, run_id)
    assert after == before and after.status is Status.RUNNING  # the repeats wrote nothing
