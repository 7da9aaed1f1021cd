"""Approval steps on `workflow-runs dev`, over HTTP as a user drives them: the example
workflow waits with its prompt (SSE shows it), approve on the public listener (JWT) lets it
finish, reject on the internal one fails it, a second decision is 409, another tenant 404,
a cancel ends a waiting approval, and a short timeout fails the run."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.devserver import DevServer

RUNS = "/api/v1/workflow-runs"
EXAMPLE = "0f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d06"  # examples/approve-then-publish.yaml


@pytest.fixture(scope="module")
def http(dev_server: DevServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_server.public, headers={"Authorization": f"Bearer {dev_server.token}"},
                      timeout=30) as client:
        yield client


def start(http: httpx.Client, workflow_id: str = EXAMPLE, inputs: dict[str, Any] | None = None) -> str:
    """A blocking execute: it answers 202 with `Location` as soon as the approval waits (a
    person decides; the run cannot end before), not when EXECUTE_WAIT_SECONDS (25) runs out."""
    began = time.monotonic()
    response = http.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"title": "v2"} if inputs is None else inputs})
    assert response.status_code == 202, response.text
    assert time.monotonic() - began < 10
    run = response.json()["workflowRun"]
    assert response.headers["location"].endswith(f"{RUNS}/{run['id']}")
    return run["id"]


def until(http: httpx.Client, run_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = http.get(f"{RUNS}/{run_id}").json()["workflowRun"]
        if run["status"] == status:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is {run['status']}, never {status}")
        time.sleep(0.1)


def test_approve_on_the_public_listener_lets_the_run_finish_and_sse_showed_the_wait(http: httpx.Client):
    run_id = start(http)
    waiting = until(http, run_id, "waiting")
    assert [(a["stepId"], a["status"]) for a in waiting["activityRuns"]] == [("draft", "completed"),
                                                                           ("review", "waiting")]
    assert waiting["activityRuns"][1]["outputs"] == {"prompt": "Publish 'Release notes: v2'?"}
    assert waiting["orchestration"] == "standard"

    response = http.post(f"{RUNS}/{run_id}/steps/review/approve",
                         json={"comment": "ana", "outputs": {"channel": "#releases"}})
    assert response.status_code == 200, response.text
    assert response.json()["workflowRun"]["status"] == "running"
    done = until(http, run_id, "completed")
    assert done["activityRuns"][-1]["outputs"] == {"note": "Release notes: v2", "channel": "#releases",
                                                   "comment": "ana"}
    # Who decided is the server's word: the dev token's subject, not anything in the body.
    review = next(a for a in done["activityRuns"] if a["stepId"] == "review")
    assert review["outputs"]["decidedBy"] == "dev-user"
    assert review["outputs"]["prompt"] == "Publish 'Release notes: v2'?"
    again = http.post(f"{RUNS}/{run_id}/steps/review/approve", json={})
    assert again.status_code == 409 and again.json()["error"] == "Conflict"

    # SSE (here its replay from the start) showed the wait, then the decision and the end.
    text = http.get(f"{RUNS}/{run_id}/events", headers={"Accept": "text/event-stream"}, timeout=30).text
    events = [(name, json.loads(data)) for name, data in re.findall(r"^event: (\S+)\ndata: (.*)$", text, re.MULTILINE)]
    seen = [(name, body["content"].get("stepId"), body["content"]["status"]) for name, body in events
            if name in ("workflow-run", "activity-run")]
    # (the step's and the run's `waiting` are one transaction: either may come first)
    parked = max(seen.index(("activity-run", "review", "waiting")), seen.index(("workflow-run", None, "waiting")))
    assert parked < seen.index(("activity-run", "review", "completed")) < seen.index(("workflow-run", None, "completed"))
    # The waiting attempt's event carries what it waits for, so a live reader can ask the person
    steps = {(body["content"]["stepId"], body["content"]["status"]): body["content"] for name, body in events
             if name == "activity-run"}
    assert steps["review", "waiting"]["outputs"] == {"prompt": "Publish 'Release notes: v2'?"}
    assert "outputs" not in steps["review", "completed"] and "outputs" not in steps["draft", "completed"]
    assert events[-1][0] == "result" and events[-1][1]["workflowRun"]["status"] == "completed"


def test_reject_on_the_internal_listener_fails_the_run_and_another_tenant_gets_404(
        http: httpx.Client, dev_server: DevServer):
    run_id = start(http)
    until(http, run_id, "waiting")
    other = httpx.post(f"{dev_server.internal}{RUNS}/{run_id}/steps/review/reject",
                       headers={"X-Tenant-Id": "someone-else"}, json={})
    assert other.status_code == 404
    response = httpx.post(f"{dev_server.internal}{RUNS}/{run_id}/steps/review/reject",
                          headers={"X-Tenant-Id": "dev"}, json={"comment": "not this week"})
    assert response.status_code == 200, response.text
    run = until(http, run_id, "failed")
    assert run["error"] == {"message": "not this week", "stepId": "review"}
    assert http.post(f"{RUNS}/{run_id}/steps/review/approve").status_code == 409


def test_cancel_ends_a_waiting_approval_at_once(http: httpx.Client):
    run_id = start(http)
    until(http, run_id, "waiting")
    [result] = http.post(f"{RUNS}/cancel", json={"runIds": [run_id]}).json()["results"]
    assert result["status"] == "cancelled"
    run = until(http, run_id, "cancelled", timeout=5)
    assert [a["status"] for a in run["activityRuns"]] == ["completed", "cancelled"]
    assert http.post(f"{RUNS}/{run_id}/steps/review/approve").status_code == 409


def test_an_approval_without_a_decision_times_out(http: httpx.Client):
    workflow_id = str(uuid.uuid4())
    body = {"name": "Quick review", "steps": [
        {"id": "review", "type": "approval", "config": {"prompt": "quick?", "timeoutSeconds": 1}},
        {"id": "after", "type": "transform", "config": {"output": "never"}}]}
    assert http.put(f"/api/v1/workflows/{workflow_id}", json=body).status_code == 200
    # 202 once the approval waits; 200 with the failed run when its 1 s ran out before the
    # blocking execute looked again (a busy machine)
    response = http.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {}})
    assert response.status_code in (200, 202), response.text
    run = until(http, response.json()["workflowRun"]["id"], "failed", timeout=20)
    assert run["error"] == {"message": "approval timed out", "stepId": "review"}
    assert [(a["stepId"], a["status"]) for a in run["activityRuns"]] == [("review", "failed")]


def test_a_bad_approval_config_is_a_clear_400(http: httpx.Client):
    body = {"name": "Bad", "steps": [{"id": "review", "type": "approval",
                                      "config": {"prompt": "", "timeoutSeconds": 0}}]}
    response = http.put(f"/api/v1/workflows/{uuid.uuid4()}", json=body)
    assert response.status_code == 400
    details = " ".join(response.json()["details"]) if isinstance(response.json()["details"], list) \
        else response.json()["details"]
    assert "config.prompt" in details and "config.timeoutSeconds" in details
