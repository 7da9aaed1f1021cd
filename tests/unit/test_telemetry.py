"""Powertools in the step runner, the reconciler and the projector: the agreed metric names
and dimensions, flushed per invocation as EMF on stdout, and logs carrying the correlation
keys. The API's are in tests/api/test_telemetry_api.py."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from workflow_runs import telemetry
from workflow_runs.settings import get_settings
from workflow_runs.store import dynamodb_client
from workflow_runs_step_runner import handler as step_handler
from workflow_runs_step_runner import reconciler
from workflow_runs_stream import projector

from tests.telemetry_support import logs, metrics, point_logs_at_stdout
from tests.unit.step_runner.test_runner import TENANT, TWO_STEPS, Bench, bench  # noqa: F401
from tests.unit.stream.test_projector import batch, run_record


class Context:
    function_name = "workflow-runs-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:workflow-runs-test"
    log_group_name = "/aws/lambda/workflow-runs-test"
    log_stream_name = "stream"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@pytest.fixture(autouse=True)
def _logs_to_captured_stdout() -> None:
    for service in (telemetry.STEP_RUNNER, telemetry.RECONCILER, telemetry.PROJECTOR):
        point_logs_at_stdout(service)


@pytest.fixture
def from_env(bench: Bench, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """The functions' factories read this moto-backed bench's tables from the environment."""
    settings = bench.settings
    for name, value in {"RUNS_TABLE": settings.runs_table, "EVENTS_TABLE": settings.events_table,
                        "LOCAL_SECRET_KEY": settings.local_secret_key,
                        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:runs"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DYNAMODB_ENDPOINT_URL", raising=False)
    caches = (get_settings, dynamodb_client, step_handler.collaborators, reconciler.collaborators,
              projector._default_store)
    for cached in caches:
        cached.cache_clear()
    yield bench
    for cached in caches:
        cached.cache_clear()


def test_a_step_that_ends_its_run_emits_step_duration_and_runs_ended_each_under_its_own_dimensions(
        from_env: Bench, capsys: pytest.CaptureFixture[str]):
    run_id = from_env.new_run(TWO_STEPS[:1], inputs={"topic": "tides"})
    context = Context()

    reply = step_handler.handler({"runId": run_id, "attempt": 0}, context)

    out = capsys.readouterr().out
    assert reply["next"] == "done"
    emitted = {m.name: m for m in metrics(out)}
    assert set(emitted) == {"StepDuration", "RunsEnded"}
    duration = emitted["StepDuration"]
    assert duration.unit == "Milliseconds" and duration.dimensions == {"service": "step-runner",
                                                                       "StepType": "transform"}
    assert len(duration.values) == 1 and 0 <= duration.values[0] < 10_000
    ended = emitted["RunsEnded"]
    assert ended.unit == "Count" and ended.values == (1,)
    assert ended.dimensions == {"service": "step-runner", "Status": "completed", "RunClass": "standard"}
    started = [r for r in logs(out) if r["message"] == "step started"]
    assert len(started) == 1
    assert {k: started[0].get(k) for k in ("request_id", "run_id", "tenant", "step_id", "service")} == {
        "request_id": context.aws_request_id, "run_id": run_id, "tenant": TENANT, "step_id": "a",
        "service": "step-runner"}


def test_a_failed_step_ends_its_run_as_failed(from_env: Bench, capsys: pytest.CaptureFixture[str]):
    failing = [{"id": "boom", "type": "fail", "config": {"message": "no"}}]
    run_id = from_env.new_run(failing)

    step_handler.handler({"runId": run_id, "attempt": 0}, Context())

    ended = [m for m in metrics(capsys.readouterr().out) if m.name == "RunsEnded"]
    assert [m.dimensions for m in ended] == [{"service": "step-runner", "Status": "failed", "RunClass": "standard"}]


def test_invocations_do_not_share_their_correlation_keys(from_env: Bench, capsys: pytest.CaptureFixture[str]):
    step_handler.handler({"runId": from_env.new_run(TWO_STEPS[:1], inputs={"topic": "x"}), "attempt": 0}, Context())
    capsys.readouterr()
    unknown = str(uuid.uuid4())

    step_handler.handler({"runId": unknown, "attempt": 0}, Context())

    (record,) = [r for r in logs(capsys.readouterr().out) if r["message"] == "run not found"]
    assert record["run_id"] == unknown and "tenant" not in record and "step_id" not in record


def test_the_reconciler_counts_the_runs_it_settles(from_env: Bench, capsys: pytest.CaptureFixture[str]):
    run_id = from_env.new_run(TWO_STEPS[:1], inputs={"topic": "x"})
    event = {"detail-type": "Step Functions Execution Status Change", "detail": {"name": run_id, "status": "ABORTED"}}

    assert reconciler.handler(event, Context()) == {"settled": 1}

    out = capsys.readouterr().out
    assert [(m.name, m.dimensions) for m in metrics(out)] == [
        ("RunsEnded", {"service": "reconciler", "Status": "cancelled", "RunClass": "standard"})]
    (settled,) = [r for r in logs(out) if r["message"] == "run settled by the reconciler"]
    assert settled["run_id"] == run_id and settled["service"] == "reconciler"


def test_the_projector_reports_the_lag_of_each_projected_record(from_env: Bench, capsys: pytest.CaptureFixture[str]):
    run_id = from_env.new_run(TWO_STEPS[:1], inputs={"topic": "x"})
    delivery = batch(run_record(1, run_id, "running", "scheduled"), run_record(2, run_id, "failed", "running"))
    written = time.time() - 2.5  # the changes reached the stream 2.5 s ago
    for record in delivery["Records"]:
        record["dynamodb"]["ApproximateCreationDateTime"] = written

    reply = projector.handler(delivery, Context())

    assert reply == {"batchItemFailures": []}
    (lag,) = [m for m in metrics(capsys.readouterr().out) if m.name == "ProjectionLag"]
    assert lag.unit == "Milliseconds" and lag.dimensions == {"service": "projector"}
    assert len(lag.values) == 2 and all(2500 <= value < 60_000 for value in lag.values)


def test_outside_an_instrumented_invocation_nothing_is_recorded(capsys: pytest.CaptureFixture[str]):
    telemetry.run_started("standard")
    telemetry.correlate(tenant="t")

    assert metrics(capsys.readouterr().out) == []
    assert telemetry.get_metrics(telemetry.API).metric_set == {}


def test_not_in_lambda_an_entry_module_does_no_init(monkeypatch: pytest.MonkeyPatch):
    primed: list[str] = []
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "f")

    assert telemetry.lambda_init(lambda: primed.append("x")) is False
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    assert telemetry.lambda_init(lambda: primed.append("x")) is True
    assert primed == ["x"]


def test_after_a_restore_the_random_sequence_differs_from_the_snapshot_s(monkeypatch: pytest.MonkeyPatch):
    import random

    random.seed(7)
    state = random.getstate()
    remade: list[Any] = []

    telemetry.restored(lambda: remade.append(True))

    assert random.getstate() != state and remade == [True]


def test_an_approval_that_times_out_counts_its_run_as_ended_once(from_env: Bench,
                                                                   capsys: pytest.CaptureFixture[str]):
    # Given a run parked on an approval step (the Approval state's park invocation)
    run_id = from_env.new_run([{"id": "review", "type": "approval",
                                "config": {"prompt": "Ship it?", "timeoutSeconds": 60}}])
    assert step_handler.handler({"runId": run_id, "action": "approval", "token": "task-token", "attempt": 0},
                                Context())["next"] == "approval"
    capsys.readouterr()

    # When its timeout fires (States.Timeout → the approval-timeout invocation)
    reply = step_handler.handler({"runId": run_id, "action": "approval-timeout"}, Context())

    # Then the run failed, and RunsEnded{failed} was emitted once for it
    assert reply["next"] == "failed"
    ended = [m for m in metrics(capsys.readouterr().out) if m.name == "RunsEnded"]
    assert [(m.dimensions, m.values) for m in ended] == [
        ({"service": "step-runner", "Status": "failed", "RunClass": "standard"}, (1,))]
