"""The real state machine (infra/state_machine.asl.json) run by moto's Step Functions
interpreter, each Lambda task answered by the real step runner, which reads and writes
DynamoDB Local. Retries are instant (the interpreter's sleep is recorded, not slept)."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from workflow_runs.models import RunInput, Status, WorkflowDefinition
from workflow_runs.secrets import get_sealer
from workflow_runs.store import NewRun, RunStore
from workflow_runs_dev.orchestrator import LocalOrchestrator
from workflow_runs_step_runner import handler as step_runner
from workflow_runs_step_runner.runner import run_step
from workflow_runs_step_runner.steps import registry as real_registry
from workflow_runs_step_runner.steps.base import StepError, StepOutcome

from tests.integration.sfn_harness import Machine, state_machine
from tests.support import ScriptedServer

pytestmark = pytest.mark.dynamodb_local

TENANT = "t1"
TRANSFORM_A = {"id": "a", "type": "transform", "config": {"output": "{{ inputs.topic }}"}}
TRANSFORM_B = {"id": "b", "type": "transform", "config": {"output": {"echo": "{{ steps.a.outputs.value }}!"}}}


# ---------------------------------------------------------------------------- helpers


@pytest.fixture
def server_factory() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def make(*statuses: int) -> ScriptedServer:
        servers.append(ScriptedServer(*statuses))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def new_run(store: RunStore, steps: list[dict], inputs: dict[str, Any] | None = None,
            orchestration: str = "standard") -> str:
    inputs = inputs if inputs is not None else {"topic": "tides"}
    definition = WorkflowDefinition.model_validate({
        "name": "Integration", "inputs": [{"name": n, "type": "string"} for n in inputs], "steps": steps})
    workflow = store.put_workflow(TENANT, str(uuid.uuid4()), definition)
    run_id = str(uuid.uuid4())
    store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow,
                            inputs=[RunInput(name=k, value=v) for k, v in inputs.items()],
                            orchestration=orchestration))
    return run_id


def wait_for_status(store: RunStore, run_id: str, status: Status, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while store.run_status(run_id) is not status:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} never became {status.value}")
        time.sleep(0.02)


def activities(store: RunStore, run_id: str) -> list[tuple[str, str, int]]:
    return [(a.step_id, a.status.value, a.attempt) for a in store.get_run(TENANT, run_id).activity_runs]


def assert_transitions_bounded(machine: Machine, arn: str, steps: int) -> list[str]:
    entered = machine.entered_states(arn)
    assert len(entered) <= 2 * steps + 4, entered
    return entered


# ---------------------------------------------------------------------------- the cases


@pytest.mark.parametrize("kind", ["STANDARD", "EXPRESS"])
def test_run_succeeds_with_two_transitions_per_step(lambda_settings, local_store, kind: str):
    run_id = new_run(local_store, [TRANSFORM_A, TRANSFORM_B], orchestration=kind.lower())

    with state_machine(step_runner.handler, kind) as machine:
        arn, status = machine.run(run_id)
        entered = assert_transitions_bounded(machine, arn, steps=2)

    assert status == "SUCCEEDED"
    assert entered == ["RunStep", "Route", "RunStep", "Route", "Done"]
    run = local_store.get_run(TENANT, run_id)
    assert run.status is Status.COMPLETED
    assert [a.outputs for a in run.activity_runs] == [{"value": "tides"}, {"echo": "tides!"}]


def test_retryable_http_failure_is_retried_and_succeeds_as_attempt_two(lambda_settings, local_store,
                                                                       server_factory):
    server = server_factory(503, 200)
    run_id = new_run(local_store, [{"id": "fetch", "type": "http", "config": {"url": server.url},
                                    "retry": {"maxAttempts": 3}}, TRANSFORM_A])

    with state_machine(step_runner.handler) as machine:
        arn, status = machine.run(run_id)
        entered = assert_transitions_bounded(machine, arn, steps=2)
        attempts = [e["attempt"] for e in machine.router.events]
        slept = list(machine.slept)

    assert status == "SUCCEEDED"
    assert len(slept) == 1 and 0 <= slept[0] <= 2  # IntervalSeconds 2, full jitter
    assert attempts == [0, 1, 0]  # $$.State.RetryCount, restarted for the next step
    assert entered.count("RunStep") == 2  # a retry happens inside the state, not as a transition
    assert activities(local_store, run_id) == [
        ("fetch", "failed", 1), ("fetch", "completed", 2), ("a", "completed", 1)]
    assert server.requests == 2


def test_exhausted_retries_fail_the_run_at_the_steps_max_attempts(lambda_settings, local_store, server_factory):
    server = server_factory(503)
    run_id = new_run(local_store, [{"id": "fetch", "type": "http", "config": {"url": server.url},
                                    "retry": {"maxAttempts": 3}}, TRANSFORM_A])

    with state_machine(step_runner.handler) as machine:
        arn, status = machine.run(run_id)
        assert_transitions_bounded(machine, arn, steps=2)
        slept = list(machine.slept)

    assert status == "FAILED"
    # Two retries, then the runner itself ends the run on the step's last attempt (no third retry).
    assert len(slept) == 2 and 0 <= slept[1] <= 4
    run = local_store.get_run(TENANT, run_id)
    assert (run.status, run.error.step_id) == (Status.FAILED, "fetch")
    assert "503" in run.error.message
    assert activities(local_store, run_id) == [("fetch", "failed", 1), ("fetch", "failed", 2), ("fetch", "failed", 3)]


def test_fail_step_fails_the_run_and_no_later_step_runs(lambda_settings, local_store):
    run_id = new_run(local_store, [TRANSFORM_A, {"id": "guard", "type": "fail", "config": {"message": "stop here"}},
                                   TRANSFORM_B])

    with state_machine(step_runner.handler) as machine:
        _, status = machine.run(run_id)

    assert status == "FAILED"
    run = local_store.get_run(TENANT, run_id)
    assert (run.status, run.error.message, run.error.step_id) == (Status.FAILED, "stop here", "guard")
    assert activities(local_store, run_id) == [("a", "completed", 1), ("guard", "failed", 1)]


def test_unhandled_runner_error_is_caught_and_fails_the_run(lambda_settings, local_store):
    run_id = new_run(local_store, [TRANSFORM_A])

    def crashing_then_real(event: dict) -> dict:
        if event.get("action") != "fail":
            raise RuntimeError("out of memory, say")
        return step_runner.handler(event)

    with state_machine(crashing_then_real) as machine:
        arn, status = machine.run(run_id)
        entered = machine.entered_states(arn)

    assert status == "FAILED"
    assert entered == ["RunStep", "RecordFailure", "StepFailed"]
    error = local_store.get_run(TENANT, run_id).error
    assert (error.message, error.step_id) == ("the step runner failed (RuntimeError): out of memory, say", "a")


@pytest.mark.parametrize("kind", ["STANDARD", "EXPRESS"])
def test_wait_step_shows_waiting_then_completes(lambda_settings, local_store, kind: str):
    run_id = new_run(local_store, [TRANSFORM_A, {"id": "pause", "type": "wait", "config": {"seconds": 1}},
                                   TRANSFORM_B], orchestration=kind.lower())

    with state_machine(step_runner.handler, kind) as machine:
        arn = machine.start(run_id)
        wait_for_status(local_store, run_id, Status.WAITING)
        during = activities(local_store, run_id)
        status = machine.wait_until_ended(arn)
        entered = assert_transitions_bounded(machine, arn, steps=3)

    assert during == [("a", "completed", 1), ("pause", "waiting", 1)]
    assert status == "SUCCEEDED"
    assert entered == ["RunStep", "Route", "RunStep", "Route", "Wait", "RunStep", "Route", "Done"]
    assert local_store.get_run(TENANT, run_id).status is Status.COMPLETED
    assert activities(local_store, run_id) == [("a", "completed", 1), ("pause", "completed", 1),
                                               ("b", "completed", 1)]


def test_stop_during_a_wait_cancels_and_the_run_stays_cancelled(lambda_settings, local_store):
    wait_seconds = 2
    run_id = new_run(local_store, [{"id": "pause", "type": "wait", "config": {"seconds": wait_seconds}},
                                   TRANSFORM_A])

    with state_machine(step_runner.handler) as machine:
        arn = machine.start(run_id)
        wait_for_status(local_store, run_id, Status.WAITING)
        waiting_since = time.monotonic()
        # The API's cancel: the store first (the truth every step write checks), then the execution.
        record = local_store.get_run_record(run_id)
        local_store.cancel_run(record, "changed my mind")
        machine.client.stop_execution(executionArn=arn, cause="changed my mind")
        status = machine.wait_until_ended(arn)
        time.sleep(max(0.0, wait_seconds + 0.5 - (time.monotonic() - waiting_since)))  # past the wait's end
        invocations = len(machine.router.events)
        final = machine.status(arn)

    assert (status, final) == ("ABORTED", "ABORTED")
    assert invocations == 1  # nothing ran after the stop
    run = local_store.get_run(TENANT, run_id)
    assert (run.status, run.cancel_reason) == (Status.CANCELLED, "changed my mind")
    assert activities(local_store, run_id) == [("pause", "cancelled", 1)]


def test_express_cancel_during_a_wait_ends_the_execution_at_its_next_step_changing_nothing(
        lambda_settings, local_store):
    # Given an Express run waiting (Express has no StopExecution: the API only cancels in the store)
    run_id = new_run(local_store, [{"id": "pause", "type": "wait", "config": {"seconds": 1}}, TRANSFORM_A],
                     orchestration="express")

    with state_machine(step_runner.handler, "EXPRESS") as machine:
        arn = machine.start(run_id)
        wait_for_status(local_store, run_id, Status.WAITING)
        local_store.cancel_run(local_store.get_run_record(run_id), "changed my mind")
        status = machine.wait_until_ended(arn)
        entered = machine.entered_states(arn)

    # Then the execution ran its next step, which found the run cancelled and wrote nothing
    assert status == "SUCCEEDED"
    assert entered == ["RunStep", "Route", "Wait", "RunStep", "Route", "Done"]
    run = local_store.get_run(TENANT, run_id)
    assert (run.status, run.cancel_reason) == (Status.CANCELLED, "changed my mind")
    assert activities(local_store, run_id) == [("pause", "cancelled", 1)]


# ---------------------------------------------------------------------------- parity


class FlakyHttp:
    """`http` that answers 503 (retryable) on its first `failures` attempts."""

    def __init__(self, failures: int):
        self.failures = failures

    def run(self, ctx: Any) -> StepOutcome:
        if ctx.attempt <= self.failures:
            raise StepError("http: GET https://example.com answered 503", retryable=True)
        return StepOutcome(outputs={"statusCode": 200, "attempt": ctx.attempt})


class Registry:
    def __init__(self, **types: Any):
        self.types = types

    def get(self, name: str) -> Any:
        return self.types.get(name) or real_registry.get(name)


PARITY_WORKFLOWS = {
    "success": [TRANSFORM_A, TRANSFORM_B],
    "retry": [{"id": "fetch", "type": "http", "config": {"url": "https://example.com"},
               "retry": {"maxAttempts": 3}}, TRANSFORM_A],
    "exhausted": [{"id": "fetch", "type": "http", "config": {"url": "https://example.com/flaky"},
                   "retry": {"maxAttempts": 2}}, TRANSFORM_A],
    "fail": [TRANSFORM_A, {"id": "guard", "type": "fail", "config": {"message": "no {{ inputs.topic }}"}}, TRANSFORM_B],
    "wait": [{"id": "pause", "type": "wait", "config": {"seconds": 1}}, TRANSFORM_A],
}


class ParityHttp:
    """Succeeds on attempt 2, except for the `/flaky` URL which never does."""

    def run(self, ctx: Any) -> StepOutcome:
        failures = 99 if ctx.step.config["url"].endswith("/flaky") else 1
        return FlakyHttp(failures).run(ctx)


def history(store: RunStore, run_id: str) -> dict[str, Any]:
    """What a client sees of a run, minus ids and timestamps."""
    run = store.get_run(TENANT, run_id)
    return {
        "status": run.status.value,
        "error": run.error.dump() if run.error else None,
        "activities": [(a.step_id, a.status.value, a.attempt, a.outputs) for a in run.activity_runs],
    }


@pytest.mark.parametrize("kind", ["STANDARD", "EXPRESS"])
def test_local_orchestrator_and_state_machine_leave_the_same_history(local_settings, local_store, kind: str):
    invoke = functools.partial(run_step, settings=local_settings, store=local_store,
                               sealer=get_sealer(local_settings), registry=Registry(http=ParityHttp()))
    under_moto = {name: new_run(local_store, steps, orchestration=kind.lower())
                  for name, steps in PARITY_WORKFLOWS.items()}
    under_local = {name: new_run(local_store, steps, orchestration=kind.lower())
                   for name, steps in PARITY_WORKFLOWS.items()}

    with state_machine(invoke, kind) as machine:
        arns = {name: machine.start(run_id) for name, run_id in under_moto.items()}
        moto_status = {name: machine.wait_until_ended(arn) for name, arn in arns.items()}
    local = LocalOrchestrator(invoke=invoke, store=local_store, retry_interval_scale=0.001)
    try:
        for run_id in under_local.values():
            local.start(run_id, kind.lower())
        local_status = {name: local.join(run_id, timeout=20) for name, run_id in under_local.items()}
    finally:
        local.shutdown()

    assert local_status == moto_status == {
        "success": "SUCCEEDED", "retry": "SUCCEEDED", "exhausted": "FAILED", "fail": "FAILED", "wait": "SUCCEEDED"}
    for name in PARITY_WORKFLOWS:
        assert history(local_store, under_local[name]) == history(local_store, under_moto[name]), name
    assert history(local_store, under_local["retry"])["activities"][:2] == [
        ("fetch", "failed", 1, {"error": "http: GET https://example.com answered 503"}),
        ("fetch", "completed", 2, {"statusCode": 200, "attempt": 2})]


# ---------------------------------------------------------------------------- retry of a failed run


class MachineStarter:
    """The service's orchestrator port over the moto machine (start only: what a retry needs)."""

    def __init__(self, machine: Machine):
        self.machine = machine

    def start(self, run_id: str, orchestration: str = "standard") -> None:
        self.machine.start(run_id)

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = "standard") -> bool:
        return False

    def describe(self, run_id: str) -> str | None:
        return None


def retry_workflow(store: RunStore, url: str) -> str:
    definition = WorkflowDefinition.model_validate({
        "name": "Retried", "inputs": [{"name": "topic", "type": "string", "required": True}],
        "steps": [TRANSFORM_A,
                  {"id": "fetch", "type": "http", "config": {"url": url}},  # one attempt: a 500 fails the run
                  {"id": "c", "type": "transform",
                   "config": {"output": {"echo": "{{ steps.a.outputs.value }}!", "tokenLength": "{{ env.TOKEN | length }}"}}}]})
    workflow_id = str(uuid.uuid4())
    store.put_workflow(TENANT, workflow_id, definition)
    return workflow_id


def test_retry_starts_at_the_failed_step_with_the_completed_steps_reused(lambda_settings, local_store,
                                                                          server_factory):
    from workflow_runs.service import ExecuteRequest, RunService

    server = server_factory(500, 200)
    workflow_id = retry_workflow(local_store, server.url)

    with state_machine(step_runner.handler) as machine:
        service = RunService(local_store, MachineStarter(machine), lambda_settings)
        failed = service.start_run(TENANT, ExecuteRequest(workflow_id=workflow_id, inputs={"topic": "tides"},
                                                          envs={"TOKEN": "s3cret-value"}))
        assert machine.wait_until_ended(machine.execution_arn(failed.id)) == "FAILED"
        invocations_before = len(machine.router.events)
        retry = service.retry(TENANT, failed.id)
        arn = machine.execution_arn(retry.id)
        status = machine.wait_until_ended(arn)
        entered = machine.entered_states(arn)
        retry_steps = machine.router.events[invocations_before:]

    assert status == "SUCCEEDED"
    # The retry's execution ran fetch and c only: a is not run again.
    assert entered == ["RunStep", "Route", "RunStep", "Route", "Done"]
    assert [e["runId"] for e in retry_steps] == [retry.id, retry.id]
    assert server.requests == 2  # one failed fetch in the first run, one good one in the retry
    source, done = local_store.get_run(TENANT, failed.id), local_store.get_run(TENANT, retry.id)
    assert (source.status, source.retried_by, source.error.step_id) == (Status.FAILED, retry.id, "fetch")
    assert (done.status, done.retry_of) == (Status.COMPLETED, failed.id)
    assert [(a.step_id, a.status.value, a.reused) for a in done.activity_runs] == [
        ("a", "completed", True), ("fetch", "completed", False), ("c", "completed", False)]
    source_a = next(a for a in source.activity_runs if a.step_id == "a")
    assert done.activity_runs[0].outputs == source_a.outputs == {"value": "tides"}
    # c read the reused step's outputs, and the envs sealed for the failed run.
    assert done.activity_runs[2].outputs == {"echo": "tides!", "tokenLength": 12}


class Passing:
    def run(self, ctx: Any) -> StepOutcome:
        return StepOutcome(outputs={"ok": 1})


@pytest.mark.parametrize("driver", ["state machine", "local orchestrator"])
def test_a_retry_whose_steps_were_not_copied_yet_gets_them_from_the_step_runner(lambda_settings, local_settings,
                                                                                 local_store, driver: str):
    from workflow_runs.retries import plan_retry

    run_id = new_run(local_store, [TRANSFORM_A, {"id": "guard", "type": "fail", "config": {"message": "no"}},
                                   TRANSFORM_B])
    invoke = functools.partial(run_step, settings=local_settings, store=local_store,
                               sealer=get_sealer(local_settings))
    with state_machine(invoke) as machine:
        assert machine.run(run_id)[1] == "FAILED"
    source = local_store.get_run_record(run_id)
    # The guard passes this time: the retry runs the same version, so the test swaps the
    # step type the runner finds for `fail` (its registry), not the workflow.
    passing = Registry(fail=Passing())
    retry_id = str(uuid.uuid4())
    workflow = local_store.workflow_version(TENANT, source.run.workflow_id, source.workflow_version)
    # The retry as the API writes it, minus the copy (as if that write met a busy table).
    local_store.create_retry(NewRun(run_id=retry_id, tenant=TENANT, workflow=workflow, inputs=source.run.inputs,
                                    retry_of=run_id), source)
    assert local_store.get_run(TENANT, retry_id).activity_runs == []
    invoke = functools.partial(run_step, settings=local_settings, store=local_store,
                               sealer=get_sealer(local_settings), registry=passing)

    if driver == "state machine":
        with state_machine(invoke) as machine:
            assert machine.run(retry_id)[1] == "SUCCEEDED"
    else:
        local = LocalOrchestrator(invoke=invoke, store=local_store, retry_interval_scale=0.001)
        try:
            local.start(retry_id, "standard")
            assert local.join(retry_id, timeout=20) == "SUCCEEDED"
        finally:
            local.shutdown()

    done = local_store.get_run(TENANT, retry_id)
    assert done.status is Status.COMPLETED
    assert [(a.step_id, a.reused, a.outputs) for a in done.activity_runs] == [
        ("a", True, {"value": "tides"}), ("guard", False, {"ok": 1}), ("b", False, {"echo": "tides!"})]
    assert [a.id for a in done.activity_runs[:1]] == [a.id for _, a in plan_retry(source, retry_id).reused]
