"""Every endpoint through FastAPI's TestClient: replies as the contract shapes them."""

from __future__ import annotations

import json
import uuid

from workflow_runs.models import Status

from tests.api.conftest import WORKFLOW, Api

RUNS = "/api/v1/workflow-runs"


def test_execute_multipart_creates_a_scheduled_run_and_starts_it(api: Api):
    workflow_id = api.put_workflow()
    response = api.client.post(
        f"{RUNS}/execute",
        files={"workflowId": (None, workflow_id), "inputs": (None, '{"topic": "tides"}'), "envs": (None, '{"K": "v"}')},
        headers=api.headers(),
    )
    assert response.status_code == 202
    run = response.json()["workflowRun"]
    assert response.headers["location"] == f"{RUNS}/{run['id']}"
    assert response.json()["success"] is False
    assert run["status"] == "scheduled" and run["workflowName"] == "Summarise"
    assert run["inputs"] == [{"name": "topic", "value": "tides"}, {"name": "count", "value": 3}]
    assert api.orchestrator.started == [run["id"]]
    assert "envs" not in json.dumps(response.json())


def test_the_run_class_is_chosen_at_start_stored_and_shown(api: Api):
    # Given a one-step transform workflow (bound to end in seconds) and one with a long wait
    short = api.put_workflow()
    long = api.put_workflow(body={**WORKFLOW, "steps": [{"id": "w", "type": "wait", "config": {"seconds": 600}}]})

    # When both run under the default `auto`
    ids = {}
    for name, workflow_id in (("short", short), ("long", long)):
        response = api.client.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}},
                                   headers=api.headers())
        ids[name] = response.json()["workflowRun"]["id"]
        assert response.json()["workflowRun"]["orchestration"] == ("express" if name == "short" else "standard")

    # Then each started on its class's machine, and get shows the stored class
    assert api.orchestrator.classes == {ids["short"]: "express", ids["long"]: "standard"}
    for name, run_id in ids.items():
        shown = api.client.get(f"{RUNS}/{run_id}", headers=api.headers()).json()["workflowRun"]["orchestration"]
        assert shown == ("express" if name == "short" else "standard")


def test_an_llm_workflow_with_the_default_timeout_runs_express_under_auto(api: Api):
    # Given transform → llm → transform, the llm step with no timeoutSeconds (60 s)
    workflow_id = api.put_workflow(body={**WORKFLOW, "steps": [
        {"id": "prompt", "type": "transform", "config": {"output": {"text": "About {{ inputs.topic }}"}}},
        {"id": "think", "type": "llm", "config": {"prompt": "{{ steps.prompt.outputs.text }}"}},
        {"id": "shape", "type": "transform", "config": {"output": "{{ steps.think.outputs.text }}"}}]})

    # When it runs under the default ORCHESTRATION=auto
    response = api.client.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}},
                               headers=api.headers())

    # Then it starts on the Express machine
    run = response.json()["workflowRun"]
    assert run["orchestration"] == "express"
    assert api.orchestrator.classes == {run["id"]: "express"}


def test_an_llm_timeout_outside_its_range_is_refused_on_put(api: Api):
    for timeout in (0, -1, 271, "60", True):
        body = {**WORKFLOW, "steps": [{"id": "l", "type": "llm", "config": {"prompt": "hi", "timeoutSeconds": timeout}}]}
        response = api.client.put(f"/api/v1/workflows/{uuid.uuid4()}", json=body, headers=api.headers())
        assert response.status_code == 400, timeout
        assert "timeoutSeconds" in json.dumps(response.json()["details"])


def test_execute_json_body_is_accepted(api: Api):
    workflow_id = api.put_workflow()
    response = api.client.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}},
                               headers=api.headers())
    assert response.status_code == 202


def test_execute_answers_200_when_the_run_ends_within_the_budget(api: Api):
    workflow_id = api.put_workflow()
    record_holder = {}

    def complete_on_start(run_id: str, orchestration: str = "standard") -> None:
        record = api.store.get_run_record(run_id)
        record_holder["run"] = api.store.transition_run(api.store.transition_run(record, Status.RUNNING), Status.COMPLETED)

    api.orchestrator.start = complete_on_start  # the run ends as soon as it starts
    api.service.settings = api.service.settings.model_copy(update={"execute_wait_seconds": 2.0})
    response = api.client.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}},
                               headers=api.headers())
    assert response.status_code == 200
    assert response.json()["success"] is True
    assert response.json()["workflowRun"]["status"] == "completed"


def test_idempotency_key_returns_the_first_run_and_409_for_another_body(api: Api):
    workflow_id = api.put_workflow()
    body = {"workflowId": workflow_id, "inputs": {"topic": "x"}}
    headers = {**api.headers(), "Idempotency-Key": "order-42"}
    first = api.client.post(f"{RUNS}/execute", json=body, headers=headers)
    again = api.client.post(f"{RUNS}/execute", json=body, headers=headers)
    assert again.json()["workflowRun"]["id"] == first.json()["workflowRun"]["id"]
    assert len(api.orchestrator.started) == 1
    other = api.client.post(f"{RUNS}/execute", json={**body, "inputs": {"topic": "y"}}, headers=headers)
    assert other.status_code == 409 and other.json()["error"] == "Conflict"


def test_execute_when_the_orchestrator_fails_leaves_the_run_failed_not_stuck(api: Api):
    workflow_id = api.put_workflow()
    api.orchestrator.fail_start = True
    response = api.client.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}},
                               headers=api.headers())
    run = response.json()["workflowRun"]
    assert run["status"] == "failed" and "could not be started" in run["error"]["message"]


def test_get_returns_the_run_with_activity_runs(api: Api):
    workflow_id = api.put_workflow()
    run_id = api.service.start_run("t1", _request(workflow_id)).id
    response = api.client.get(f"{RUNS}/{run_id}", headers=api.headers())
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["workflowRun"]["id"] == run_id
    assert body["workflowRun"]["activityRuns"] == [] and body["workflowRun"]["error"] is None


def test_list_pages_newest_first_with_exact_totals(api: Api):
    workflow_id = api.put_workflow()
    ids = [api.service.start_run("t1", _request(workflow_id)).id for _ in range(5)]
    first = api.client.get(RUNS, params={"limit": 2}, headers=api.headers()).json()
    last = api.client.get(RUNS, params={"limit": 2, "page": 3}, headers=api.headers()).json()
    assert first["pagination"] == {"page": 1, "limit": 2, "total": 5, "totalPages": 3,
                                   "nextToken": first["pagination"]["nextToken"]}
    assert [r["id"] for r in first["data"]] == ids[::-1][:2]
    assert [r["id"] for r in last["data"]] == [ids[0]]
    assert last["pagination"]["nextToken"] is None
    assert set(first["data"][0]) == {"id", "workflowId", "workflowName", "status", "inputs", "createdAt", "updatedAt"}


def test_next_token_walks_the_list_to_its_end_with_page_numbers(api: Api):
    workflow_id = api.put_workflow()
    ids = [api.service.start_run("t1", _request(workflow_id)).id for _ in range(5)]
    seen, pages, params = [], [], {"limit": 2, "workflowId": workflow_id}
    while True:
        body = api.client.get(RUNS, params=params, headers=api.headers()).json()
        seen += [r["id"] for r in body["data"]]
        pages.append(body["pagination"]["page"])
        if body["pagination"]["nextToken"] is None:
            break
        params = {"limit": 2, "workflowId": workflow_id, "nextToken": body["pagination"]["nextToken"]}
    assert seen == ids[::-1]
    assert pages == [1, 2, 3]


def test_a_next_token_is_bound_to_its_tenant_and_filters_and_refuses_tampering(api: Api):
    workflow_id = api.put_workflow()
    for _ in range(3):
        api.service.start_run("t1", _request(workflow_id))
    token = api.client.get(RUNS, params={"limit": 1}, headers=api.headers()).json()["pagination"]["nextToken"]
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    refused = [
        api.client.get(RUNS, params={"nextToken": token, "status": "running"}, headers=api.headers()),
        api.client.get(RUNS, params={"nextToken": token}, headers=api.headers(tenant="t2")),
        api.client.get(RUNS, params={"nextToken": flipped}, headers=api.headers()),
        api.client.get(RUNS, params={"nextToken": "not-a-token"}, headers=api.headers()),
        api.client.get(RUNS, params={"nextToken": token, "page": 2}, headers=api.headers()),
    ]
    assert [r.status_code for r in refused] == [400] * 5
    assert all(r.json()["error"] == "ValidationError" for r in refused)
    assert api.client.get(RUNS, params={"nextToken": token}, headers=api.headers()).status_code == 200


def test_offset_pages_past_ten_thousand_items_point_to_next_token(api: Api):
    response = api.client.get(RUNS, params={"page": 101, "limit": 100}, headers=api.headers())
    assert response.status_code == 400
    assert "nextToken" in " ".join(response.json()["details"])
    assert api.client.get(RUNS, params={"page": 100, "limit": 100}, headers=api.headers()).status_code == 200


def test_list_filters_and_searches(api: Api):
    summarise = api.put_workflow()
    other = api.put_workflow(body={**WORKFLOW, "name": "Nightly cleanup"})
    api.service.start_run("t1", _request(summarise))
    api.service.start_run("t1", _request(other))
    by_search = api.client.get(RUNS, params={"search": "CLEAN"}, headers=api.headers()).json()
    by_workflow = api.client.get(RUNS, params={"workflowId": summarise, "status": "scheduled"}, headers=api.headers()).json()
    assert [r["workflowName"] for r in by_search["data"]] == ["Nightly cleanup"]
    assert by_search["pagination"]["total"] == 1
    assert [r["workflowId"] for r in by_workflow["data"]] == [summarise]


def test_dashboard_counts_every_status(api: Api):
    workflow_id = api.put_workflow()
    api.service.start_run("t1", _request(workflow_id))
    body = api.client.get(f"{RUNS}/dashboard/{workflow_id}", headers=api.headers()).json()
    assert body == {"success": True, "workflowId": workflow_id, "total": 1,
                    "counts": {"scheduled": 1, "running": 0, "completed": 0, "failed": 0, "cancelled": 0, "waiting": 0}}


def test_cancel_reports_an_outcome_per_run(api: Api):
    workflow_id = api.put_workflow()
    live = api.service.start_run("t1", _request(workflow_id)).id
    done = api.service.start_run("t1", _request(workflow_id)).id
    record = api.store.get_run_record(done)
    api.store.transition_run(api.store.transition_run(record, Status.RUNNING), Status.COMPLETED)
    missing = str(uuid.uuid4())
    response = api.client.post(f"{RUNS}/cancel", json={"runIds": [live, done, missing], "reason": "not needed"},
                               headers=api.headers())
    outcomes = {r["runId"]: r["status"] for r in response.json()["results"]}
    assert outcomes == {live: "cancelled", done: "already_completed", missing: "not_found"}
    again = api.client.post(f"{RUNS}/cancel", json={"runIds": [live]}, headers=api.headers()).json()
    assert again["results"][0]["status"] == "not_eligible"
    run = api.client.get(f"{RUNS}/{live}", headers=api.headers()).json()["workflowRun"]
    assert run["status"] == "cancelled" and run["cancelReason"] == "not needed"
    assert api.orchestrator.stopped == [live]


def test_cancel_by_workflow_cancels_every_open_run(api: Api):
    workflow_id = api.put_workflow()
    ids = {api.service.start_run("t1", _request(workflow_id)).id for _ in range(3)}
    response = api.client.post(f"{RUNS}/cancel", json={"workflowId": workflow_id}, headers=api.headers()).json()
    assert {r["runId"] for r in response["results"]} == ids
    assert {r["status"] for r in response["results"]} == {"cancelled"}
    assert api.client.get(f"{RUNS}/dashboard/{workflow_id}", headers=api.headers()).json()["counts"]["cancelled"] == 3


def test_workflows_put_get_and_list(api: Api):
    workflow_id = str(uuid.uuid4())
    first = api.client.put(f"/api/v1/workflows/{workflow_id}", json=WORKFLOW, headers=api.headers())
    second = api.client.put(f"/api/v1/workflows/{workflow_id}", json=WORKFLOW, headers=api.headers())
    assert first.status_code == 200 and first.json()["workflow"]["version"] == 1
    assert second.json()["workflow"]["version"] == 2
    got = api.client.get(f"/api/v1/workflows/{workflow_id}", headers=api.headers()).json()["workflow"]
    assert got["id"] == workflow_id and got["steps"][0]["id"] == "a"
    listed = api.client.get("/api/v1/workflows", headers=api.headers()).json()
    assert [w["id"] for w in listed["data"]] == [workflow_id] and listed["pagination"]["total"] == 1


def _request(workflow_id: str):
    from workflow_runs.service import ExecuteRequest

    return ExecuteRequest(workflow_id=workflow_id, inputs={"topic": "tides"})


def test_cancel_when_stopping_fails_reports_error_but_the_run_stays_cancelled(api: Api):
    workflow_id = api.put_workflow()
    run_id = api.service.start_run("t1", _request(workflow_id)).id

    def stop_fails(run_id: str, reason: str | None = None) -> bool:
        raise RuntimeError("throttled")

    api.orchestrator.stop = stop_fails
    result = api.client.post(f"{RUNS}/cancel", json={"runIds": [run_id]}, headers=api.headers()).json()["results"][0]
    assert result["status"] == "error" and "throttled" not in result["message"]
    assert api.service.get_run("t1", run_id).status is Status.CANCELLED


class _ThrottledWrites:
    """The store's client with every TransactWriteItems throttled past botocore's retries."""

    def __init__(self, client):
        self._client = client

    def transact_write_items(self, **_):
        raise self._client.exceptions.ProvisionedThroughputExceededException(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}}, "TransactWriteItems")

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_store_busy_through_every_retry_answers_503_with_retry_after_and_changes_nothing(api: Api):
    workflow_id = api.put_workflow()
    run_id = api.service.start_run("t1", _request(workflow_id)).id
    db = api.service.store.db
    db.client = _ThrottledWrites(db.client)
    try:
        execute = api.client.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}},
                                  headers=api.headers())
        cancel = api.client.post(f"{RUNS}/cancel", json={"runIds": [run_id]}, headers=api.headers())
    finally:
        db.client = db.client._client
    for response in (execute, cancel):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json()["error"] == "Unavailable"
    listed = api.client.get(RUNS, headers=api.headers()).json()
    assert listed["pagination"]["total"] == 1
    assert [r["status"] for r in listed["data"]] == ["scheduled"]
