"""The API's promises on `workflow-runs dev`, once with ORCHESTRATION=standard and once with
ORCHESTRATION=express: the local runtime (real step runner, local orchestrator with each
class's semantics, stream poller, projector) answered over HTTP.

Each behaviour: the run class is stored and shown; waiting, thinking and the SSE order with
one closing event; resume after a Last-Event-ID; retries recorded as attempts; a cancel
during a wait ends the run and its stream, and the run stays cancelled after the wait.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from workflow_runs.models import WorkflowDefinition
from workflow_runs_dev.dynamodb_local import free_port
from workflow_runs_dev.runtime import DEV_TENANT, LocalRuntime

from tests.integration.sse_helpers import RUNS, events_of, read_stream
from tests.support import ScriptedServer

WAIT_THEN_THINK = {
    "name": "Wait then think",
    "steps": [
        {"id": "first", "type": "transform", "config": {"output": "one"}},
        {"id": "pause", "type": "wait", "config": {"seconds": 1}},
        {"id": "think", "type": "llm", "config": {"prompt": "Say hello"}},
    ],
}
CANCEL_WAIT_SECONDS = 3


@pytest.fixture(scope="module", params=["standard", "express"])
def runtime(request: pytest.FixtureRequest) -> Iterator[LocalRuntime]:
    # The idle pace sets how long a quiet log waits before the stream ends from the run's status
    # (ten idle polls: 6 s here, 10 s by default): a busy machine's projector lags by seconds.
    env = {"ORCHESTRATION": request.param, "SSE_POLL_MAX_SECONDS": "0.6", "HTTP_STEP_ALLOWED_HOSTS": "127.0.0.1",
           "EXECUTE_WAIT_SECONDS": "10"}
    rt = LocalRuntime(port=free_port(), internal_port=free_port(), dynamodb="moto", env=env,
                      retry_interval_scale=0.01)
    rt.start()
    yield rt
    rt.stop()


@pytest.fixture
def client(runtime: LocalRuntime) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {runtime.token}"}
    with httpx.Client(timeout=30, base_url=runtime.public_url, headers=headers) as http_client:
        yield http_client


def put_workflow(runtime: LocalRuntime, body: dict) -> str:
    workflow_id = str(uuid.uuid4())
    runtime.service.put_workflow(DEV_TENANT, workflow_id, WorkflowDefinition.model_validate(body))
    return workflow_id


def run_class(runtime: LocalRuntime) -> str:
    assert runtime.settings is not None
    return runtime.settings.orchestration


def test_waiting_thinking_sse_order_and_resume_hold_in_the_run_class(runtime: LocalRuntime, client: httpx.Client):
    workflow_id = put_workflow(runtime, WAIT_THEN_THINK)

    _, live = read_stream(client, "POST", f"{RUNS}/execute/stream", json={"workflowId": workflow_id})

    events = events_of(live)
    statuses = [(f.event, (f.content or {}).get("status")) for f in events if f.event == "workflow-run"]
    assert statuses[0] == ("workflow-run", "scheduled")
    assert ("workflow-run", "waiting") in statuses
    assert [f.event for f in events if f.event in ("result", "error")] == ["result"]
    assert events[-1].event == "result"
    assert any(f.event == "thinking" for f in events)
    final = events[-1].data["workflowRun"]
    assert final["orchestration"] == run_class(runtime)
    assert [(a["stepId"], a["status"]) for a in final["activityRuns"]] == [
        ("first", "completed"), ("pause", "completed"), ("think", "completed")]
    # resume: exactly the events after the one named
    run_id = final["id"]
    middle = events[3].id
    _, resumed = read_stream(client, "GET", f"{RUNS}/{run_id}/events", headers={"Last-Event-ID": middle})
    assert [(f.id, f.event) for f in events_of(resumed)] == [(f.id, f.event) for f in events[4:]]


def test_a_retried_step_is_recorded_as_attempts_in_the_run_class(runtime: LocalRuntime, client: httpx.Client):
    server = ScriptedServer(503, 200)
    try:
        workflow_id = put_workflow(runtime, {"name": "Flaky", "steps": [
            {"id": "fetch", "type": "http", "config": {"url": server.url}, "retry": {"maxAttempts": 3}}]})
        reply = client.post(f"{RUNS}/execute", json={"workflowId": workflow_id})
    finally:
        server.close()

    assert reply.status_code == 200, reply.text
    run = reply.json()["workflowRun"]
    assert (run["status"], run["orchestration"]) == ("completed", run_class(runtime))
    assert [(a["attempt"], a["status"]) for a in run["activityRuns"]] == [(1, "failed"), (2, "completed")]


def test_a_cancel_during_a_wait_ends_the_run_and_it_stays_cancelled(runtime: LocalRuntime, client: httpx.Client):
    workflow_id = put_workflow(runtime, {"name": "Waits", "steps": [
        {"id": "pause", "type": "wait", "config": {"seconds": CANCEL_WAIT_SECONDS}},
        {"id": "after", "type": "transform", "config": {"output": "too late"}}]})

    def cancel_once_waiting(frames: list) -> bool:
        last = frames[-1]
        if last.event == "workflow-run" and last.content["status"] == "waiting":
            reply = client.post(f"{RUNS}/cancel", json={"runIds": [last.content["workflowRunId"]], "reason": "enough"})
            assert reply.json()["results"][0]["status"] == "cancelled"
        return False

    _, frames = read_stream(client, "POST", f"{RUNS}/execute/stream", until=cancel_once_waiting,
                            json={"workflowId": workflow_id})
    events = events_of(frames)
    assert events[-1].event == "error" and events[-1].data["details"]["status"] == "cancelled"
    run_id = events[0].content["workflowRunId"]

    # past the wait's end: an Express execution ran its next step, which changed nothing
    time.sleep(CANCEL_WAIT_SECONDS + 1)
    run = client.get(f"{RUNS}/{run_id}").json()["workflowRun"]
    assert (run["status"], run["cancelReason"], run["orchestration"]) == ("cancelled", "enough", run_class(runtime))
    assert [(a["stepId"], a["status"]) for a in run["activityRuns"]] == [("pause", "cancelled")]
    assert runtime.orchestrator.describe(run_id) == ("ABORTED" if run_class(runtime) == "standard" else "SUCCEEDED")
