"""The local orchestrator follows the state machine: retries with attempts, waits, Catch, stop."""

from __future__ import annotations

import functools
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from workflow_runs.errors import Unavailable
from workflow_runs.models import MAX_ATTEMPTS_CEILING, Status, WorkflowDefinition
from workflow_runs.retry_rules import STEP_RETRY
from workflow_runs.secrets import get_sealer
from workflow_runs.settings import Settings
from workflow_runs.store import NewRun, RunStore
from workflow_runs_dev.orchestrator import LocalOrchestrator
from workflow_runs_step_runner.runner import run_step
from workflow_runs_step_runner.steps import registry as real_registry
from workflow_runs_step_runner.steps.base import StepError, StepOutcome

TENANT = "t1"
ASL = Path(__file__).resolve().parents[2] / "infra" / "state_machine.asl.json"
TRANSFORM = {"id": "done", "type": "transform", "config": {"output": "ok"}}


class FlakyHttp:
    """An `http` step type that answers 503 (retryable) `failures` times, then succeeds."""

    def __init__(self, failures: int):
        self.failures = failures

    def run(self, ctx: Any) -> StepOutcome:
        if ctx.attempt <= self.failures:
            raise StepError("http: GET https://example.com answered 503", retryable=True)
        return StepOutcome(outputs={"statusCode": 200})


class Registry:
    def __init__(self, **types: Any):
        self.types = types

    def get(self, name: str) -> Any:
        return self.types.get(name) or real_registry.get(name)


def new_run(store: RunStore, steps: list[dict]) -> str:
    workflow = store.put_workflow(TENANT, str(uuid.uuid4()),
                                  WorkflowDefinition.model_validate({"name": "Local", "steps": steps}))
    run_id = str(uuid.uuid4())
    store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow, inputs=[]))
    return run_id


class Recorder:
    """Wraps the step runner and records every event it is called with."""

    def __init__(self, settings: Settings, store: RunStore, registry: Any = None):
        self.events: list[dict] = []
        self._call = functools.partial(run_step, settings=settings, store=store, sealer=get_sealer(settings),
                                       registry=registry)

    def __call__(self, event: dict) -> dict:
        self.events.append(event)
        return self._call(event)


@pytest.fixture
def orchestrators():
    made: list[LocalOrchestrator] = []

    def make(**kwargs: Any) -> LocalOrchestrator:
        made.append(LocalOrchestrator(retry_interval_scale=0.001, rng=random.Random(7), **kwargs))
        return made[-1]

    yield make
    for orchestrator in made:
        orchestrator.shutdown()


def wait_for_status(store: RunStore, run_id: str, status: Status, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while store.run_status(run_id) is not status:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} never became {status.value}")
        time.sleep(0.02)


def test_run_completes_and_a_repeated_start_starts_nothing(local_settings, local_store, orchestrators):
    run_id = new_run(local_store, [{"id": "a", "type": "transform", "config": {"output": "1"}}, TRANSFORM])
    runner = Recorder(local_settings, local_store)
    orchestrator = orchestrators(invoke=runner, store=local_store)

    orchestrator.start(run_id)
    orchestrator.start(run_id)

    assert orchestrator.join(run_id, timeout=10) == "SUCCEEDED"
    assert orchestrator.describe(run_id) == "SUCCEEDED"
    assert runner.events == [{"runId": run_id, "attempt": 0}] * 2
    assert local_store.get_run(TENANT, run_id).status is Status.COMPLETED


def test_retryable_failure_is_retried_and_recorded_as_attempt_two(local_settings, local_store, orchestrators):
    run_id = new_run(local_store, [{"id": "fetch", "type": "http", "config": {"url": "https://example.com"},
                                    "retry": {"maxAttempts": 3}}])
    runner = Recorder(local_settings, local_store, Registry(http=FlakyHttp(failures=1)))
    orchestrator = orchestrators(invoke=runner, store=local_store)

    orchestrator.start(run_id)

    assert orchestrator.join(run_id, timeout=10) == "SUCCEEDED"
    assert [e["attempt"] for e in runner.events] == [0, 1]
    run = local_store.get_run(TENANT, run_id)
    assert [(a.attempt, a.status) for a in run.activity_runs] == [(1, Status.FAILED), (2, Status.COMPLETED)]


class BusyStoreFirst(Recorder):
    """The step runner as DynamoDB answers it when it stays busy through the store's own
    retries for the first `times` invocations: Unavailable, nothing written."""

    def __init__(self, settings: Settings, store: RunStore, times: int):
        super().__init__(settings, store)
        self.times = times

    def __call__(self, event: dict) -> dict:
        if self.times:
            self.times -= 1
            self.events.append(event)
            raise Unavailable("the store is busy; nothing was changed; try again")
        return super().__call__(event)


def test_a_busy_store_is_retried_like_the_state_machine_retries_it(local_settings, local_store, orchestrators):
    run_id = new_run(local_store, [TRANSFORM])
    runner = BusyStoreFirst(local_settings, local_store, times=2)
    orchestrator = orchestrators(invoke=runner, store=local_store)

    orchestrator.start(run_id)

    assert orchestrator.join(run_id, timeout=10) == "SUCCEEDED"
    assert [e["attempt"] for e in runner.events] == [0, 1, 2]  # RetryCount counts every retrier's retries
    assert local_store.get_run(TENANT, run_id).status is Status.COMPLETED


def test_retries_end_at_the_steps_max_attempts(local_settings, local_store, orchestrators):
    run_id = new_run(local_store, [{"id": "fetch", "type": "http", "config": {"url": "https://example.com"},
                                    "retry": {"maxAttempts": 3}}, TRANSFORM])
    runner = Recorder(local_settings, local_store, Registry(http=FlakyHttp(failures=99)))
    orchestrator = orchestrators(invoke=runner, store=local_store)

    orchestrator.start(run_id)

    assert orchestrator.join(run_id, timeout=10) == "FAILED"
    run = local_store.get_run(TENANT, run_id)
    assert (run.status, run.error.step_id) == (Status.FAILED, "fetch")
    assert [(a.step_id, a.attempt) for a in run.activity_runs] == [("fetch", 1), ("fetch", 2), ("fetch", 3)]


def test_unhandled_error_goes_through_the_catch(local_settings, local_store, orchestrators):
    run_id = new_run(local_store, [TRANSFORM])
    runner = Recorder(local_settings, local_store)

    def crashing(event: dict) -> dict:
        if event.get("action") != "fail":
            raise RuntimeError("the function crashed")
        return runner(event)

    orchestrator = orchestrators(invoke=crashing, store=local_store)
    orchestrator.start(run_id)

    assert orchestrator.join(run_id, timeout=10) == "FAILED"
    (catch,) = runner.events
    assert catch["action"] == "fail" and catch["cause"]["Error"] == "RuntimeError"
    error = local_store.get_run(TENANT, run_id).error
    assert (error.message, error.step_id) == ("the step runner failed (RuntimeError): the function crashed", "done")


def test_cancel_during_a_wait_aborts_at_once_and_the_run_stays_cancelled(local_settings, local_store,
                                                                         orchestrators):
    run_id = new_run(local_store, [{"id": "pause", "type": "wait", "config": {"seconds": 30}}, TRANSFORM])
    runner = Recorder(local_settings, local_store)
    orchestrator = orchestrators(invoke=runner, store=local_store)
    orchestrator.start(run_id)
    wait_for_status(local_store, run_id, Status.WAITING)

    # What the API's cancel does: the store first, then the orchestration.
    record = local_store.get_run_record(run_id)
    local_store.cancel_run(record, "not needed")
    assert orchestrator.stop(run_id, "not needed")

    assert orchestrator.join(run_id, timeout=5) == "ABORTED"
    assert len(runner.events) == 1  # nothing ran after the stop
    run = local_store.get_run(TENANT, run_id)
    assert (run.status, run.cancel_reason) == (Status.CANCELLED, "not needed")
    assert [a.status for a in run.activity_runs] == [Status.CANCELLED]


def test_stop_alone_is_settled_like_the_stacks_eventbridge_rule(local_settings, local_store, orchestrators):
    run_id = new_run(local_store, [{"id": "pause", "type": "wait", "config": {"seconds": 30}}, TRANSFORM])
    orchestrator = orchestrators(invoke=Recorder(local_settings, local_store), store=local_store)
    orchestrator.start(run_id)
    wait_for_status(local_store, run_id, Status.WAITING)

    orchestrator.stop(run_id)

    assert orchestrator.join(run_id, timeout=5) == "ABORTED"
    run = local_store.get_run(TENANT, run_id)
    assert (run.status, run.cancel_reason) == (Status.CANCELLED, "the run's execution was stopped")


def test_executions_beyond_max_workers_queue_as_running(orchestrators):
    release = threading.Event()
    calls: list[str] = []

    def blocking(event: dict) -> dict:
        calls.append(event["runId"])
        release.wait(5)
        return {"runId": event["runId"], "next": "done", "waitSeconds": 0}

    orchestrator = orchestrators(invoke=blocking, max_workers=1)
    orchestrator.start("first")
    orchestrator.start("second")
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)

    assert calls == ["first"]
    assert (orchestrator.describe("first"), orchestrator.describe("second")) == ("RUNNING", "RUNNING")
    release.set()
    assert [orchestrator.join(r, timeout=5) for r in ("first", "second")] == ["SUCCEEDED", "SUCCEEDED"]


def test_unknown_run_has_no_execution(orchestrators):
    orchestrator = orchestrators(invoke=lambda event: {})

    assert orchestrator.describe("nope") is None
    assert orchestrator.stop("nope") is False


def test_shutdown_ends_waits_and_refuses_new_starts(orchestrators):
    def waiting(event: dict) -> dict:
        return {"runId": event["runId"], "next": "wait", "waitSeconds": 3600}

    orchestrator = orchestrators(invoke=waiting)
    orchestrator.start("r1")

    orchestrator.shutdown()  # returns once the worker left its wait

    assert orchestrator.join("r1", timeout=0) == "ABORTED"
    with pytest.raises(RuntimeError):
        orchestrator.start("r2")


def test_every_attempt_a_step_may_ask_for_fits_in_the_retry():
    # Every attempt a step may ask for (retry.maxAttempts ≤ the ceiling) fits in the Retry.
    assert STEP_RETRY.max_attempts == MAX_ATTEMPTS_CEILING - 1


def test_backoff_doubles_up_to_the_cap_with_full_jitter():
    rng = random.Random(1)
    ceilings = [min(2 * 2**n, 300) for n in range(9)]

    delays = [STEP_RETRY.delay(n, rng) for n in range(9)]

    assert all(0 <= d <= c for d, c in zip(delays, ceilings))
    assert ceilings[-1] == 300


# ------------------------------------------------------------------ the Express class


def new_express_run(store: RunStore, steps: list[dict]) -> str:
    workflow = store.put_workflow(TENANT, str(uuid.uuid4()),
                                  WorkflowDefinition.model_validate({"name": "Local", "steps": steps}))
    run_id = str(uuid.uuid4())
    store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow, inputs=[], orchestration="express"))
    return run_id


def test_express_cancel_does_not_stop_the_execution_it_ends_at_its_next_step(local_settings, local_store,
                                                                             orchestrators):
    # Given an Express run waiting (a short wait: Express waits are short by construction)
    run_id = new_express_run(local_store, [{"id": "pause", "type": "wait", "config": {"seconds": 1}}, TRANSFORM])
    runner = Recorder(local_settings, local_store)
    orchestrator = orchestrators(invoke=runner, store=local_store)
    orchestrator.start(run_id, "express")
    wait_for_status(local_store, run_id, Status.WAITING)

    # When the API cancels it: the store first, then a stop that Express does not have
    local_store.cancel_run(local_store.get_run_record(run_id), "not needed")
    assert orchestrator.stop(run_id, "not needed", orchestration="express")

    # Then the execution runs on to its next step, which changes nothing and ends it
    assert orchestrator.join(run_id, timeout=10) == "SUCCEEDED"
    assert len(runner.events) == 2
    run = local_store.get_run(TENANT, run_id)
    assert (run.status, run.cancel_reason) == (Status.CANCELLED, "not needed")
    assert [(a.step_id, a.status) for a in run.activity_runs] == [("pause", Status.CANCELLED)]


def test_express_run_delivered_twice_runs_each_step_once(local_settings, local_store, orchestrators):
    # Given every Express run started as two concurrent executions (at least once, forced)
    steps = [{"id": f"s{i}", "type": "transform", "config": {"output": str(i)}} for i in range(4)]
    run_id = new_express_run(local_store, steps)
    runner = Recorder(local_settings, local_store)
    orchestrator = orchestrators(invoke=runner, store=local_store, express_duplicates=True)

    # When it runs
    orchestrator.start(run_id, "express")
    orchestrator.join(run_id, timeout=20)

    # Then it completed with one activity run per step, while both executions invoked the runner
    assert local_store.get_run(TENANT, run_id).status is Status.COMPLETED
    run = local_store.get_run(TENANT, run_id)
    assert [(a.step_id, a.attempt, a.status) for a in run.activity_runs] == [
        (f"s{i}", 1, Status.COMPLETED) for i in range(4)]
    assert len(runner.events) > len(steps)


def test_express_execution_that_dies_leaves_a_failed_run_never_a_running_one(local_settings, local_store,
                                                                            orchestrators):
    # Given an Express run whose execution outlives Express's limit in the middle of a step
    run_id = new_express_run(local_store, [TRANSFORM, {"id": "pause", "type": "wait", "config": {"seconds": 30}},
                                           TRANSFORM | {"id": "last"}])
    orchestrator = orchestrators(invoke=Recorder(local_settings, local_store), store=local_store,
                                 express_max_seconds=0.5)

    orchestrator.start(run_id, "express")

    # Then the execution times out and the run is failed as the sweep fails it (no event)
    assert orchestrator.join(run_id, timeout=10) == "TIMED_OUT"
    run = local_store.get_run(TENANT, run_id)
    assert (run.status, run.error.step_id) == (Status.FAILED, "pause")
    assert "Express" in run.error.message
