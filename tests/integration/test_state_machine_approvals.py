"""Approval steps in the real state machine (infra/state_machine.asl.json) under moto's
interpreter: the Approval state's `lambda:invoke.waitForTaskToken` stays RUNNING, with no
invocation in flight, until the API's service sends the token back through Step Functions
(SendTaskSuccess / SendTaskFailure) or its TimeoutSecondsPath passes. The step runner reads
and writes DynamoDB Local."""

from __future__ import annotations

import time
from typing import Any

import pytest
from workflow_runs.approvals import DecisionRequest, open_token
from workflow_runs.errors import Conflict
from workflow_runs.models import Status
from workflow_runs.orchestrator import StepFunctionsOrchestrator
from workflow_runs.secrets import get_sealer
from workflow_runs.service import RunService
from workflow_runs.store import RunStore
from workflow_runs_step_runner import handler as step_runner

from tests.integration.sfn_harness import Machine, state_machine
from tests.integration.test_state_machine import (
    TENANT,
    TRANSFORM_A,
    activities,
    new_run,
    wait_for_status,
)

pytestmark = pytest.mark.dynamodb_local

REVIEW = {"id": "review", "type": "approval", "config": {"prompt": "Publish {{ inputs.topic }}?"}}
QUICK_REVIEW = {"id": "review", "type": "approval", "config": {"prompt": "Publish?", "timeoutSeconds": 1}}
NEXT = {"id": "b", "type": "transform", "config": {"output": "{{ steps.review.outputs.approved }}"}}


def service_of(machine: Machine, store: RunStore, settings: Any) -> RunService:
    return RunService(store, StepFunctionsOrchestrator(machine.arn, client=machine.client), settings)


def parked(machine: Machine, store: RunStore, run_id: str) -> str:
    """Start the run and return once its execution waits on the token with nothing running."""
    arn = machine.start(run_id)
    wait_for_status(store, run_id, Status.WAITING)
    deadline = time.monotonic() + 5
    while not any(e.get("action") == "approval" for e in machine.router.events) and time.monotonic() < deadline:
        time.sleep(0.01)
    return arn


def approve_losing_the_callback(machine: Machine, store: RunStore, settings: Any, run_id: str) -> None:
    """The approve is stored and its SendTaskSuccess never reaches Step Functions (the API
    died between the two, or the call lost to the timeout)."""
    service = service_of(machine, store, settings)
    service.orchestrator.send_task_success = lambda token, output: None  # type: ignore[method-assign]
    service.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())


def test_approve_sends_the_token_and_the_run_goes_on(lambda_settings, local_store):
    run_id = new_run(local_store, [TRANSFORM_A, REVIEW, NEXT])

    with state_machine(step_runner.handler) as machine:
        arn = parked(machine, local_store, run_id)
        time.sleep(0.3)
        # Waiting costs nothing: the parking invocation returned, the execution waits on its token.
        assert machine.status(arn) == "RUNNING"
        invocations = len(machine.router.events)
        during = activities(local_store, run_id)
        after = service_of(machine, local_store, lambda_settings).decide_approval(
            TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest(comment="ok"))
        status = machine.wait_until_ended(arn)
        entered = machine.entered_states(arn)

    assert invocations == 3  # RunStep (a), RunStep (answers "approval"), Approval (parks); nothing since
    assert during == [("a", "completed", 1), ("review", "waiting", 1)]
    assert after.status is Status.RUNNING
    assert status == "SUCCEEDED"
    assert entered == ["RunStep", "Route", "RunStep", "Route", "Approval", "RunStep", "Route", "Done"]
    run = local_store.get_run(TENANT, run_id)
    assert run.status is Status.COMPLETED
    assert [(a.step_id, a.status.value) for a in run.activity_runs] == [
        ("a", "completed"), ("review", "completed"), ("b", "completed")]
    assert run.activity_runs[2].outputs == {"value": True}


def test_reject_fails_the_task_and_the_run_keeps_the_rejection(lambda_settings, local_store):
    run_id = new_run(local_store, [REVIEW, NEXT])

    with state_machine(step_runner.handler) as machine:
        arn = parked(machine, local_store, run_id)
        service_of(machine, local_store, lambda_settings).decide_approval(
            TENANT, run_id, "review", approve=False, decided_by="ana", request=DecisionRequest(comment="not now"))
        status = machine.wait_until_ended(arn)
        entered = machine.entered_states(arn)

    assert status == "FAILED"
    assert entered == ["RunStep", "Route", "Approval", "RecordFailure", "StepFailed"]
    run = local_store.get_run(TENANT, run_id)
    assert run.status is Status.FAILED
    assert run.error is not None and (run.error.message, run.error.step_id) == ("not now", "review")
    assert activities(local_store, run_id) == [("review", "failed", 1)]


def test_no_decision_within_timeout_seconds_fails_with_approval_timed_out(lambda_settings, local_store):
    run_id = new_run(local_store, [QUICK_REVIEW, NEXT])

    with state_machine(step_runner.handler) as machine:
        arn = parked(machine, local_store, run_id)
        status = machine.wait_until_ended(arn, timeout=15)
        entered = machine.entered_states(arn)
        late = service_of(machine, local_store, lambda_settings)
        with pytest.raises(Conflict):
            late.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())

    assert status == "FAILED"
    assert entered == ["RunStep", "Route", "Approval", "ApprovalTimedOut", "Route", "StepFailed"]
    run = local_store.get_run(TENANT, run_id)
    assert run.error is not None and (run.error.message, run.error.step_id) == ("approval timed out", "review")
    assert activities(local_store, run_id) == [("review", "failed", 1)]


def test_an_approval_stored_before_the_timeout_is_applied_by_the_timeout_path(lambda_settings, local_store):
    """Approve vs timeout: the decision is stored, its SendTaskSuccess is lost (the API died
    between the two, or the call lost to the timeout): the timeout path reads the store and
    the run goes on — the stored decision is the one that counts."""
    run_id = new_run(local_store, [QUICK_REVIEW, NEXT])

    with state_machine(step_runner.handler) as machine:
        arn = parked(machine, local_store, run_id)
        approve_losing_the_callback(machine, local_store, lambda_settings, run_id)
        status = machine.wait_until_ended(arn, timeout=15)
        entered = machine.entered_states(arn)

    assert status == "SUCCEEDED"
    assert entered == ["RunStep", "Route", "Approval", "ApprovalTimedOut", "Route", "RunStep", "Route", "Done"]
    assert local_store.get_run(TENANT, run_id).status is Status.COMPLETED


def test_a_repeated_approve_delivers_a_lost_callback_without_waiting_for_the_timeout(lambda_settings, local_store):
    """The approve is stored, its SendTaskSuccess lost (the API died between the two); the
    caller, who got no answer, tries again: 409 (decided already), and the stored approval is
    sent again, so the run goes on at once rather than at the approval's timeout (a day)."""
    run_id = new_run(local_store, [REVIEW, NEXT])

    with state_machine(step_runner.handler) as machine:
        arn = parked(machine, local_store, run_id)
        approve_losing_the_callback(machine, local_store, lambda_settings, run_id)
        time.sleep(0.3)
        stuck = machine.status(arn)
        with pytest.raises(Conflict, match="decided already"):
            service_of(machine, local_store, lambda_settings).decide_approval(
                TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())
        status = machine.wait_until_ended(arn, timeout=15)
        entered = machine.entered_states(arn)
        # Once the run has moved on, a repeat is a plain 409: the token is not sent again
        late = service_of(machine, local_store, lambda_settings)
        sent: list[str] = []
        late.orchestrator.send_task_success = lambda token, output: sent.append(token)  # type: ignore[method-assign]
        with pytest.raises(Conflict):
            late.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())

    assert stuck == "RUNNING"
    assert status == "SUCCEEDED"
    assert entered == ["RunStep", "Route", "Approval", "RunStep", "Route", "Done"]
    assert local_store.get_run(TENANT, run_id).status is Status.COMPLETED
    assert sent == []


def test_cancel_of_a_waiting_approval_ends_it_at_once(lambda_settings, local_store):
    run_id = new_run(local_store, [REVIEW, NEXT])

    with state_machine(step_runner.handler) as machine:
        arn = parked(machine, local_store, run_id)
        service = service_of(machine, local_store, lambda_settings)
        from workflow_runs.service import CancelRequest

        [result] = service.cancel(TENANT, CancelRequest(run_ids=[run_id], reason="no longer needed"))
        with pytest.raises(Conflict):
            service.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())
        # moto quirk: StopExecution marks the execution stopped, but its interpreter thread
        # only notices once the callback wait returns (AWS aborts at once). Wake that wait
        # with the stored token, as only this test can: the execution must end ABORTED,
        # with no step run after the stop.
        invocations = len(machine.router.events)
        approval = local_store.get_approval(run_id, 0)
        assert approval is not None
        token = open_token(get_sealer(lambda_settings), approval["token"], run_id, "review")
        machine.client.send_task_success(taskToken=token, output="{}")
        status = machine.wait_until_ended(arn, timeout=5)

    assert result.status == "cancelled"
    assert status == "ABORTED"
    assert len(machine.router.events) == invocations
    run = local_store.get_run(TENANT, run_id)
    assert (run.status, run.cancel_reason) == (Status.CANCELLED, "no longer needed")
    assert activities(local_store, run_id) == [("review", "cancelled", 1)]


def test_a_prompt_that_cannot_render_fails_the_run_instead_of_waiting(lambda_settings, local_store):
    run_id = new_run(local_store, [{"id": "review", "type": "approval",
                                    "config": {"prompt": "{{ steps.nope.outputs.x }}"}}, NEXT])

    with state_machine(step_runner.handler) as machine:
        arn, status = machine.run(run_id)
        entered = machine.entered_states(arn)

    assert status == "FAILED"
    assert entered == ["RunStep", "Route", "Approval", "RecordFailure", "StepFailed"]
    run = local_store.get_run(TENANT, run_id)
    assert run.error is not None and run.error.step_id == "review"
    assert "undefined template variable" in run.error.message
    assert activities(local_store, run_id) == [("review", "failed", 1)]


def test_local_orchestrator_and_state_machine_leave_the_same_approval_histories(lambda_settings, local_store):
    """`workflow-runs dev` follows the Approval state as the deployed machine does: approve,
    reject and timeout leave the same runs (ids and timestamps aside)."""
    import functools

    from workflow_runs_dev.orchestrator import LocalOrchestrator
    from workflow_runs_step_runner.runner import run_step

    def history(run_id: str) -> dict[str, Any]:
        run = local_store.get_run(TENANT, run_id)
        return {"status": run.status.value, "error": run.error.dump() if run.error else None,
                "activities": [(a.step_id, a.status.value, {k: v for k, v in (a.outputs or {}).items()
                                                          if k != "decidedAt"}) for a in run.activity_runs]}

    def drive(service: RunService, start: Any, wait: Any) -> dict[str, dict[str, Any]]:
        runs = {name: new_run(local_store, steps) for name, steps in
                {"approve": [REVIEW, NEXT], "reject": [REVIEW, NEXT], "timeout": [QUICK_REVIEW, NEXT]}.items()}
        for run_id in runs.values():
            start(run_id)
        for name, verb in (("approve", True), ("reject", False)):
            wait_for_status(local_store, runs[name], Status.WAITING)
            time.sleep(0.2)  # the token is stored with the waiting status; let the task take it up
            service.decide_approval(TENANT, runs[name], "review", approve=verb, decided_by="ana", request=DecisionRequest(comment="c"))
        for run_id in runs.values():
            wait(run_id)
        return {name: history(run_id) for name, run_id in runs.items()}

    with state_machine(step_runner.handler) as machine:
        moto = drive(service_of(machine, local_store, lambda_settings), machine.start,
                     lambda run_id: machine.wait_until_ended(machine.execution_arn(run_id), timeout=15))
    invoke = functools.partial(run_step, settings=lambda_settings, store=local_store, sealer=get_sealer(lambda_settings))
    local = LocalOrchestrator(invoke=invoke, store=local_store, retry_interval_scale=0.001)
    try:
        local_histories = drive(RunService(local_store, local, lambda_settings), local.start,
                                lambda run_id: local.join(run_id, timeout=15))
    finally:
        local.shutdown()

    assert moto == local_histories
    assert moto["approve"]["status"] == "completed" and moto["reject"]["error"] == {"message": "c", "stepId": "review"}
    assert moto["timeout"]["error"] == {"message": "approval timed out", "stepId": "review"}


# --- issue 28: a retry asks the approval again, unless the step says reuseOnRetry ---------------


@pytest.mark.parametrize("reuse", [False, True])
def test_a_retry_of_a_run_that_failed_after_its_approval_asks_again_unless_reuse_on_retry(
        lambda_settings, local_store, reuse: bool):
    review = {**REVIEW, "config": {**REVIEW["config"], **({"reuseOnRetry": True} if reuse else {})}}
    run_id = new_run(local_store, [review, {"id": "b", "type": "fail", "config": {"message": "boom"}}])

    # The retry's remaining steps may be Express-bound under auto; this harness runs Standard.
    settings = lambda_settings.model_copy(update={"orchestration": "standard"})
    with state_machine(step_runner.handler) as machine:
        service = service_of(machine, local_store, settings)
        arn = parked(machine, local_store, run_id)
        service.decide_approval(TENANT, run_id, "review", approve=True, decided_by="ana", request=DecisionRequest())
        assert machine.wait_until_ended(arn) == "FAILED"
        retry = service.retry(TENANT, run_id)
        if reuse:
            retry_status = machine.wait_until_ended(machine.execution_arn(retry.id))
        else:
            wait_for_status(local_store, retry.id, Status.WAITING)  # parked at the approval again
            waiting = local_store.get_run(TENANT, retry.id)
            service.decide_approval(TENANT, retry.id, "review", approve=False, decided_by="bo",
                                    request=DecisionRequest(comment="no"))
            retry_status = machine.wait_until_ended(machine.execution_arn(retry.id))

    assert retry_status == "FAILED"
    final = local_store.get_run(TENANT, retry.id)
    if reuse:  # the decision is carried over and the gated step ran again without a new one
        first = final.activity_runs[0]
        assert (first.step_id, first.status.value, first.reused) == ("review", "completed", True)
        assert final.activity_runs[0].outputs["decidedBy"] == "ana"
        assert final.error is not None and final.error.step_id == "b"
    else:  # asked again: a new decision, and this one said no, so b never ran
        assert [(a.step_id, a.status.value) for a in waiting.activity_runs] == [("review", "waiting")]
        assert [(a.step_id, a.status.value, a.reused) for a in final.activity_runs] == [("review", "failed", False)]
        assert final.activity_runs[0].outputs["decidedBy"] == "bo"
        assert final.error is not None and final.error.message == "no"
