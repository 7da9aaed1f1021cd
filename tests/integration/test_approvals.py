"""Approval steps through the service (what the routes call) and the local orchestrator (the
state machine followed in-process), the real step runner, on DynamoDB Local: approve, reject,
timeout, cancel, the races, another tenant — and the token, which no reply carries."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from workflow_runs.approvals import DecisionRequest
from workflow_runs.errors import Conflict, NotFound, ValidationFailed
from workflow_runs.models import Status, WorkflowDefinition
from workflow_runs.service import ExecuteRequest, RunService
from workflow_runs.settings import Settings
from workflow_runs.store import RunStore
from workflow_runs_dev.orchestrator import LocalOrchestrator

pytestmark = pytest.mark.dynamodb_local

TENANT = "t1"
APPROVAL = {"id": "review", "type": "approval",
            "config": {"prompt": "Publish {{ inputs.topic }}?", "timeoutSeconds": 600}}
NEXT = {"id": "next", "type": "transform", "config": {"output": "{{ steps.review.outputs.approved }}"}}
AFTER = {"id": "publish", "type": "transform",
         "config": {"output": {"by": "{{ steps.review.outputs.approver }}", "ok": "{{ steps.review.outputs.approved }}"}}}


@pytest.fixture
def world(local_settings: Settings, local_store: RunStore) -> Iterator[tuple[RunService, LocalOrchestrator]]:
    orchestrator = LocalOrchestrator(settings=local_settings, store=local_store, retry_interval_scale=0.001,
                                     rng=random.Random(3))
    yield RunService(local_store, orchestrator, local_settings), orchestrator
    orchestrator.shutdown()


def start(service: RunService, steps: list[dict[str, Any]], tenant: str = TENANT) -> str:
    definition = WorkflowDefinition.model_validate({
        "name": "Approvals", "inputs": [{"name": "topic", "type": "string"}], "steps": steps})
    workflow_id = str(uuid.uuid4())
    service.put_workflow(tenant, workflow_id, definition)
    return service.start_run(tenant, ExecuteRequest(workflow_id=workflow_id, inputs={"topic": "tides"})).id


def wait_for(store: RunStore, run_id: str, status: Status, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while store.run_status(run_id) is not status:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is {store.run_status(run_id)}, never {status.value}")
        time.sleep(0.02)


def parked(store: RunStore, orchestrator: LocalOrchestrator, run_id: str) -> None:
    """The run waits and its execution waits on a token (not only the store says so)."""
    wait_for(store, run_id, Status.WAITING)
    deadline = time.monotonic() + 5
    while orchestrator.waiting_tokens() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert orchestrator.waiting_tokens() >= 1


def test_approval_waits_with_its_prompt_and_approve_completes_it_and_the_run_goes_on(world, local_store):
    service, orchestrator = world
    run_id = start(service, [APPROVAL, AFTER])
    parked(local_store, orchestrator, run_id)

    waiting = service.get_run(TENANT, run_id)
    assert waiting.orchestration == "standard"
    assert [(a.step_id, a.status, a.outputs) for a in waiting.activity_runs] == [
        ("review", Status.WAITING, {"prompt": "Publish tides?"})]

    after = service.decide_approval(TENANT, run_id, "review", approve=True,
                                    decided_by="ana", request=DecisionRequest(comment="ship it", outputs={"approver": "ana"}))
    assert after.status is Status.RUNNING
    review = after.activity_runs[0]
    assert review.status is Status.COMPLETED
    assert review.outputs is not None and review.outputs["approved"] is True
    assert review.outputs["comment"] == "ship it" and review.outputs["approver"] == "ana"
    assert review.outputs["decidedAt"].endswith("Z")

    assert orchestrator.join(run_id, timeout=10) == "SUCCEEDED"
    run = service.get_run(TENANT, run_id)
    assert run.status is Status.COMPLETED
    assert run.activity_runs[-1].outputs == {"by": "ana", "ok": True}


def test_a_second_decision_is_409_and_changes_nothing(world, local_store):
    service, orchestrator = world
    run_id = start(service, [APPROVAL, NEXT])
    parked(local_store, orchestrator, run_id)
    service.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())
    orchestrator.join(run_id, timeout=10)

    for approve in (True, False):
        with pytest.raises(Conflict):
            service.decide_approval(TENANT, run_id, "review", approve=approve, decided_by="ana", request=DecisionRequest())
    assert service.get_run(TENANT, run_id).status is Status.COMPLETED


def test_reject_fails_the_step_and_the_run_with_the_comment(world, local_store):
    service, orchestrator = world
    run_id = start(service, [APPROVAL, AFTER])
    parked(local_store, orchestrator, run_id)

    after = service.decide_approval(TENANT, run_id, "review", approve=False,
                                    decided_by="ana", request=DecisionRequest(comment="not yet"))
    assert after.status is Status.FAILED
    assert after.error is not None and (after.error.message, after.error.step_id) == ("not yet", "review")
    assert orchestrator.join(run_id, timeout=10) == "FAILED"
    run = service.get_run(TENANT, run_id)
    assert run.status is Status.FAILED and run.error is not None and run.error.message == "not yet"
    assert [(a.step_id, a.status) for a in run.activity_runs] == [("review", Status.FAILED)]


def test_reject_without_a_comment_says_rejected_and_outputs_are_refused(world, local_store):
    service, orchestrator = world
    run_id = start(service, [APPROVAL])
    parked(local_store, orchestrator, run_id)
    with pytest.raises(ValidationFailed):
        service.decide_approval(TENANT, run_id, "review", approve=False, decided_by="ana", request=DecisionRequest(outputs={"a": 1}))
    after = service.decide_approval(TENANT, run_id, "review", approve=False, decided_by="ana", request=DecisionRequest())
    assert after.error is not None and after.error.message == "rejected"


def test_no_decision_within_timeout_seconds_fails_with_approval_timed_out(world, local_store):
    service, orchestrator = world
    run_id = start(service, [{**APPROVAL, "config": {"prompt": "quick?", "timeoutSeconds": 1}}, AFTER])
    wait_for(local_store, run_id, Status.WAITING)

    assert orchestrator.join(run_id, timeout=10) == "FAILED"
    run = service.get_run(TENANT, run_id)
    assert run.status is Status.FAILED
    assert run.error is not None and (run.error.message, run.error.step_id) == ("approval timed out", "review")
    assert [(a.step_id, a.status) for a in run.activity_runs] == [("review", Status.FAILED)]
    with pytest.raises(Conflict):
        service.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())


def test_cancel_ends_a_waiting_approval_at_once_and_a_later_approve_is_409(world, local_store):
    service, orchestrator = world
    run_id = start(service, [APPROVAL, AFTER])
    parked(local_store, orchestrator, run_id)

    from workflow_runs.service import CancelRequest

    began = time.monotonic()
    [result] = service.cancel(TENANT, CancelRequest(run_ids=[run_id]))
    assert result.status == "cancelled"
    assert orchestrator.join(run_id, timeout=5) == "ABORTED"
    assert time.monotonic() - began < 5  # not the approval's 600 s
    run = service.get_run(TENANT, run_id)
    assert run.status is Status.CANCELLED
    assert [(a.step_id, a.status) for a in run.activity_runs] == [("review", Status.CANCELLED)]
    with pytest.raises(Conflict):
        service.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())


def test_another_tenant_an_unknown_run_or_step_is_not_found_a_step_not_reached_is_409(world, local_store):
    service, _ = world
    run_id = start(service, [{"id": "first", "type": "wait", "config": {"seconds": 30}}, APPROVAL])
    wait_for(local_store, run_id, Status.WAITING)  # the wait step, not the approval

    with pytest.raises(NotFound):
        service.decide_approval("t2", run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())
    with pytest.raises(NotFound):
        service.decide_approval(TENANT, str(uuid.uuid4()), "review", approve=True, decided_by="ana", request=DecisionRequest())
    with pytest.raises(NotFound):
        service.decide_approval(TENANT, run_id, "nope", approve=True, decided_by="ana", request=DecisionRequest())
    with pytest.raises(Conflict):  # not reached yet
        service.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())
    with pytest.raises(Conflict):  # not an approval step
        service.decide_approval(TENANT, run_id, "first", approve=True, decided_by="ana", request=DecisionRequest())
    assert service.get_run(TENANT, run_id).status is Status.WAITING


def test_two_approves_at_once_one_wins_the_other_is_409(world, local_store):
    service, orchestrator = world
    run_id = start(service, [APPROVAL, NEXT])
    parked(local_store, orchestrator, run_id)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def decide(approve: bool) -> None:
        barrier.wait()
        try:
            service.decide_approval(TENANT, run_id, "review", approve=approve, decided_by="ana", request=DecisionRequest())
            outcomes.append("approved" if approve else "rejected")
        except Conflict:
            outcomes.append("409")

    threads = [threading.Thread(target=decide, args=(i % 2 == 0,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes).count("409") == 3, outcomes
    winner = next(o for o in outcomes if o != "409")
    final = orchestrator.join(run_id, timeout=10)
    run = service.get_run(TENANT, run_id)
    assert (final, run.status) == (("SUCCEEDED", Status.COMPLETED) if winner == "approved"
                                   else ("FAILED", Status.FAILED))


def test_approve_vs_cancel_one_outcome_holds_and_nothing_is_half_done(world, local_store):
    service, orchestrator = world
    from workflow_runs.service import CancelRequest

    for _ in range(3):
        run_id = start(service, [APPROVAL, {"id": "slow", "type": "wait", "config": {"seconds": 30}}])
        parked(local_store, orchestrator, run_id)
        barrier = threading.Barrier(2)
        approved: list[bool] = []

        def approve(barrier: threading.Barrier = barrier, run_id: str = run_id,
                    approved: list[bool] = approved) -> None:
            barrier.wait()
            try:
                service.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())
                approved.append(True)
            except Conflict:
                approved.append(False)

        def cancel(barrier: threading.Barrier = barrier, run_id: str = run_id) -> None:
            barrier.wait()
            service.cancel(TENANT, CancelRequest(run_ids=[run_id]))

        threads = [threading.Thread(target=approve), threading.Thread(target=cancel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        orchestrator.join(run_id, timeout=10)
        run = service.get_run(TENANT, run_id)
        # The cancel always ends the run (before or after the approve); the approval step is
        # completed exactly when the approve won, cancelled otherwise.
        assert run.status is Status.CANCELLED
        review = next(a for a in run.activity_runs if a.step_id == "review")
        assert review.status is (Status.COMPLETED if approved == [True] else Status.CANCELLED)
        assert all(a.status.terminal for a in run.activity_runs)


def test_approve_vs_timeout_the_first_stored_wins(world, local_store):
    """The timeout path reads the store: an approval stored before it is applied (the run goes
    on) even when the callback came too late; a timeout stored first makes the approve 409."""
    service, orchestrator = world
    run_id = start(service, [{**APPROVAL, "config": {"prompt": "p", "timeoutSeconds": 1}}, AFTER])
    parked(local_store, orchestrator, run_id)
    # The approve is recorded, but its callback never reaches the execution (as if the API
    # died between the two): the timeout fires and must apply the stored approval.
    original = orchestrator.send_task_success
    orchestrator.send_task_success = lambda token, output: None  # type: ignore[method-assign]
    try:
        after = service.decide_approval(TENANT, run_id, "review", approve=True,
                                        decided_by="ana", request=DecisionRequest(outputs={"approver": "bo"}))
    finally:
        orchestrator.send_task_success = original  # type: ignore[method-assign]
    assert after.status is Status.RUNNING
    assert orchestrator.join(run_id, timeout=10) == "SUCCEEDED"
    run = service.get_run(TENANT, run_id)
    assert run.status is Status.COMPLETED and run.activity_runs[-1].outputs == {"by": "bo", "ok": True}

    # And the other order: the timeout is stored first, the approve is 409.
    run_id = start(service, [{**APPROVAL, "config": {"prompt": "p", "timeoutSeconds": 1}}, AFTER])
    assert orchestrator.join(run_id, timeout=10) == "FAILED"
    with pytest.raises(Conflict):
        service.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())
    assert service.get_run(TENANT, run_id).error.message == "approval timed out"  # type: ignore[union-attr]


def test_the_task_token_is_sealed_in_the_store_and_in_no_reply(world, local_store, local_settings):
    service, orchestrator = world
    run_id = start(service, [APPROVAL])
    parked(local_store, orchestrator, run_id)
    [(token, _)] = [(t, e) for t, (e, _) in orchestrator._callbacks.items()]

    approval = local_store.get_approval(run_id, 0)
    assert approval is not None and approval["token"].startswith("v1.local.") and token not in approval["token"]
    raw = json.dumps(local_store.client.query(
        TableName=local_settings.runs_table, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"RUN#{run_id}"}})["Items"])
    assert token not in raw
    reply = service.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())
    assert token not in reply.model_dump_json()
    assert token not in service.get_run(TENANT, run_id).model_dump_json()
