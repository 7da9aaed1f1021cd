"""Powertools in the API function: RunsStarted where a run starts, RunsEnded where a cancel
or a failed start ends one, flushed per invocation as EMF; logs carry the request id, the
tenant and the run id. Through the Lambda handler, on moto, configured as in AWS."""

from __future__ import annotations

import json
import uuid

import pytest
from workflow_runs import telemetry
from workflow_runs.settings import get_settings
from workflow_runs_api import handler as api_handler
from workflow_runs_http import dependencies

from tests.api.conftest import WORKFLOW
from tests.api.lambda_events import INTERNAL, PRIVATE_API, RUNS, multipart, rest_event
from tests.telemetry_support import logs, metrics, point_logs_at_stdout


def call(event: dict) -> tuple[int, dict]:
    reply = api_handler.handler(event, None)
    return reply["statusCode"], json.loads(reply["body"])


def execute(workflow_id: str) -> dict:
    form, content_type = multipart({"workflowId": workflow_id, "inputs": '{"topic": "tides"}'})
    return rest_event("POST", f"{RUNS}/execute", api_id=PRIVATE_API, base64_body=True,
                      headers={**INTERNAL, "Content-Type": content_type}, body=form)


@pytest.fixture
def in_lambda(monkeypatch: pytest.MonkeyPatch):
    """As Lambda's runtime sets it, so the handler routes our stdlib loggers to Powertools;
    their configuration is put back afterwards."""
    import logging

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "workflow-runs-api")
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in telemetry.OUR_LOGGERS}
    api_handler.entry.cache_clear()
    yield
    api_handler.entry.cache_clear()
    for name, (handlers, level, propagate) in saved.items():
        ours = logging.getLogger(name)
        ours.handlers, ours.propagate = handlers, propagate
        ours.setLevel(level)


@pytest.fixture
def workflow_id(lambda_env: None, in_lambda: None) -> str:
    point_logs_at_stdout(telemetry.API)
    workflow_id = str(uuid.uuid4())
    status, _ = call(rest_event("PUT", f"/api/v1/workflows/{workflow_id}", api_id=PRIVATE_API,
                                headers={**INTERNAL, "Content-Type": "application/json"}, body=json.dumps(WORKFLOW)))
    assert status == 200
    return workflow_id


def test_a_started_run_is_counted_by_run_class_and_a_cancel_ends_it(workflow_id: str, capsys):
    capsys.readouterr()
    status, body = call(execute(workflow_id))
    assert status == 202
    run_id = body["workflowRun"]["id"]
    assert [(m.name, m.values, m.dimensions) for m in metrics(capsys.readouterr().out)] == [
        ("RunsStarted", (1,), {"service": "api", "RunClass": "express"})]

    status, body = call(rest_event("POST", f"{RUNS}/cancel", api_id=PRIVATE_API,
                                   headers={**INTERNAL, "Content-Type": "application/json"},
                                   body=json.dumps({"runIds": [run_id]})))

    assert status == 200 and body["results"][0]["status"] == "cancelled"
    assert [(m.name, m.dimensions) for m in metrics(capsys.readouterr().out)] == [
        ("RunsEnded", {"service": "api", "Status": "cancelled", "RunClass": "express"})]


def test_a_repeated_idempotent_execute_starts_nothing_new(workflow_id: str, capsys):
    event = execute(workflow_id)
    event["headers"]["Idempotency-Key"] = "k-1"
    event["multiValueHeaders"]["Idempotency-Key"] = ["k-1"]
    call(event)
    capsys.readouterr()

    status, _ = call(event)

    assert status == 202
    assert [m.name for m in metrics(capsys.readouterr().out)] == []


def test_a_start_that_fails_logs_with_the_correlation_keys_and_ends_the_run(
        workflow_id: str, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EXPRESS_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:gone")
    for cached in (get_settings, dependencies._default_service):
        cached.cache_clear()
    event = execute(workflow_id)
    capsys.readouterr()

    status, body = call(event)

    out = capsys.readouterr().out
    assert status == 200 and body["workflowRun"]["status"] == "failed"
    run_id = body["workflowRun"]["id"]
    assert [(m.name, m.dimensions) for m in metrics(out)] == [
        ("RunsStarted", {"service": "api", "RunClass": "express"}),
        ("RunsEnded", {"service": "api", "Status": "failed", "RunClass": "express"})]
    (record,) = [r for r in logs(out) if r["message"] == "could not start the orchestration"]
    assert {k: record.get(k) for k in ("service", "request_id", "tenant", "run_id")} == {
        "service": "api", "request_id": event["requestContext"]["requestId"], "tenant": "acme", "run_id": run_id}
