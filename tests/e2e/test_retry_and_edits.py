"""Retry of a failed run and workflow edits that cannot clobber, on `workflow-runs dev` as a
user runs it (a subprocess on free ports, over HTTP, on both listeners): the local
orchestrator and the real step runner drive the retry."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e.devserver import RUNS, WORKFLOWS, DevServer
from tests.e2e.devserver import dev_server as start_dev_server
from tests.integration.sse_helpers import events_of, read_stream
from tests.support import ScriptedServer

pytestmark = pytest.mark.dynamodb_local



class Dev:
    def __init__(self, server: DevServer):
        self.public = httpx.Client(base_url=server.public, timeout=40, headers=server.headers)
        self.internal_url = server.internal

    def internal(self, tenant: str) -> httpx.Client:
        return httpx.Client(base_url=self.internal_url, timeout=40, headers={"X-Tenant-Id": tenant})


@pytest.fixture(scope="module")
def dev(dynamodb_local_endpoint: str) -> Iterator[Dev]:
    env = {"HTTP_STEP_ALLOWED_HOSTS": "127.0.0.1", "EXECUTE_WAIT_SECONDS": "20"}
    with start_dev_server(env=env, examples=True, dynamodb_endpoint=dynamodb_local_endpoint) as server:
        yield Dev(server)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer(500, 200)
    yield scripted
    scripted.close()


def put_workflow(http: httpx.Client, steps: list[dict[str, Any]]) -> str:
    workflow_id = str(uuid.uuid4())
    body = {"name": "Retry e2e", "inputs": [{"name": "topic", "type": "string", "required": True}], "steps": steps}
    assert http.put(f"{WORKFLOWS}/{workflow_id}", json=body).status_code == 200
    return workflow_id


def failed_run(http: httpx.Client, steps: list[dict[str, Any]], envs: dict[str, str] | None = None) -> dict:
    workflow_id = put_workflow(http, steps)
    response = http.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "tides"},
                                                   "envs": envs or {}})
    assert response.status_code == 200, response.text
    run = response.json()["workflowRun"]
    assert run["status"] == "failed", run
    return run


def until_ended(http: httpx.Client, location: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = http.get(location).json()["workflowRun"]
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        time.sleep(0.1)
    raise TimeoutError(location)


GUARDED = [{"id": "a", "type": "transform", "config": {"output": "{{ inputs.topic }}"}},
           {"id": "guard", "type": "fail", "config": {"message": "stop"}}]


def test_retry_runs_from_the_failed_step_and_reuses_the_completed_ones(dev: Dev, server: ScriptedServer):
    source = failed_run(dev.public, [
        {"id": "a", "type": "transform", "config": {"output": "{{ inputs.topic }}"}},
        {"id": "fetch", "type": "http", "config": {"url": server.url}},
        {"id": "c", "type": "transform", "config": {"output": {"seen": "{{ steps.a.outputs.value }}",
                                                               "token": "{{ env.TOKEN | length }}"}}}],
        envs={"TOKEN": "s3cret"})

    response = dev.public.post(f"{RUNS}/{source['id']}/retry")

    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    assert location == f"{RUNS}/{response.json()['workflowRun']['id']}"
    done = until_ended(dev.public, location)
    assert (done["status"], done["retryOf"]) == ("completed", source["id"])
    assert [(a["stepId"], a["reused"]) for a in done["activityRuns"]] == [("a", True), ("fetch", False), ("c", False)]
    assert done["activityRuns"][0]["outputs"] == {"value": "tides"}
    assert done["activityRuns"][2]["outputs"] == {"seen": "tides", "token": 6}
    assert server.requests == 2
    again = dev.public.get(f"{RUNS}/{source['id']}").json()["workflowRun"]
    assert (again["status"], again["retriedBy"]) == ("failed", done["id"])
    # Its event stream names the run first, then the copied step, then the steps it ran.
    _, frames = read_stream(dev.public, "GET", f"{location}/events")
    events = [(f.event, (f.content or {}).get("stepId"), (f.content or {}).get("status")) for f in events_of(frames)]
    assert events[0] == ("workflow-run", None, "scheduled")
    steps = [(step, status) for name, step, status in events if name == "activity-run"]
    assert steps[0] == ("a", "completed") and ("a", "running") not in steps
    assert steps[-1] == ("c", "completed") and events[-1][0] == "result"


def test_retry_on_the_internal_listener_is_scoped_by_the_tenant_it_names(dev: Dev):
    source = failed_run(dev.public, GUARDED)

    with dev.internal("someone-else") as other, dev.internal("dev") as own:
        assert other.post(f"{RUNS}/{source['id']}/retry").status_code == 404
        response = own.post(f"{RUNS}/{source['id']}/retry")

    assert response.status_code == 202
    assert response.json()["workflowRun"]["retryOf"] == source["id"]


def test_retry_of_a_run_that_did_not_fail_is_409(dev: Dev):
    workflow_id = put_workflow(dev.public, GUARDED[:1])
    run = dev.public.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}}).json()
    assert run["workflowRun"]["status"] == "completed"

    response = dev.public.post(f"{RUNS}/{run['workflowRun']['id']}/retry")

    assert response.status_code == 409 and "only a failed run can be retried" in response.json()["details"]


def test_two_retries_at_once_make_one_run(dev: Dev):
    source = failed_run(dev.public, GUARDED)

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(lambda _: dev.public.post(f"{RUNS}/{source['id']}/retry"), range(2)))

    assert sorted(r.status_code for r in responses) == [202, 409]
    winner = next(r for r in responses if r.status_code == 202).json()["workflowRun"]["id"]
    loser = next(r for r in responses if r.status_code == 409).json()
    assert loser["details"] == f"workflow run {source['id']} was already retried by run {winner}"
    workflow_runs = dev.public.get(RUNS, params={"workflowId": source["workflowId"]}).json()
    assert workflow_runs["pagination"]["total"] == 2


def test_a_repeated_retry_with_one_idempotency_key_answers_the_same_run(dev: Dev):
    source = failed_run(dev.public, GUARDED)
    headers = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}

    first = dev.public.post(f"{RUNS}/{source['id']}/retry", headers=headers)
    again = dev.public.post(f"{RUNS}/{source['id']}/retry", headers=headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["workflowRun"]["id"] == again.json()["workflowRun"]["id"]


def test_put_of_what_get_returned_round_trips_and_two_editors_of_one_version_get_one_409(dev: Dev):
    workflow_id = put_workflow(dev.public, GUARDED)
    got = dev.public.get(f"{WORKFLOWS}/{workflow_id}")
    assert got.headers["ETag"] == '"1"'

    put = dev.public.put(f"{WORKFLOWS}/{workflow_id}", json={**got.json()["workflow"], "name": "Edited"})
    assert (put.status_code, put.headers["ETag"]) == (200, '"2"')

    def edit(name: str) -> httpx.Response:
        return dev.public.put(f"{WORKFLOWS}/{workflow_id}", json={**got.json()["workflow"], "version": None,
                                                                 "name": name}, headers={"If-Match": '"2"'})

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(edit, ["one", "two"]))

    assert sorted(r.status_code for r in responses) == [200, 409]
    winner = next(r for r in responses if r.status_code == 200).json()["workflow"]
    stored = dev.public.get(f"{WORKFLOWS}/{workflow_id}")
    assert (stored.json()["workflow"]["name"], stored.headers["ETag"]) == (winner["name"], '"3"')
    wrong_id = dev.public.put(f"{WORKFLOWS}/{workflow_id}", json={**stored.json()["workflow"], "id": str(uuid.uuid4())})
    assert wrong_id.status_code == 400
