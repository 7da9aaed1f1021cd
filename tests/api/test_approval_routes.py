"""`POST /api/v1/workflow-runs/{runId}/steps/{stepId}/approve` and `/reject` on both
listeners: the replies API.md gives, exactly once, tenant-scoped, every input checked. The
run is parked by the real step runner (its Approval invocation) on moto's DynamoDB; the
orchestrator fake records the callbacks."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from workflow_runs import telemetry
from workflow_runs.models import Status
from workflow_runs.service import ExecuteRequest
from workflow_runs_api.app import create_app
from workflow_runs_step_runner.runner import run_step

from tests.api.conftest import Api
from tests.telemetry_support import metrics

RUNS = "/api/v1/workflow-runs"
TOKEN = "sfn-task-token-of-the-approval"
WORKFLOW = {
    "name": "Review",
    "inputs": [{"name": "topic", "type": "string", "required": True}],
    "steps": [{"id": "review", "type": "approval", "config": {"prompt": "Publish {{ inputs.topic }}?"}},
              {"id": "after", "type": "transform", "config": {"output": "done"}}],
}


def parked_run(api: Api, tenant: str = "t1") -> str:
    """A run whose approval step waits: started, then the Approval state's invocation."""
    workflow_id = api.put_workflow(tenant, WORKFLOW)
    run = api.service.start_run(tenant, ExecuteRequest(workflow_id=workflow_id, inputs={"topic": "tides"}))
    settings, store = api.service.settings, api.store
    reply = run_step({"runId": run.id}, settings=settings, store=store, sealer=None)  # type: ignore[arg-type]
    assert reply["next"] == "approval" and reply["timeoutSeconds"] == 86400
    run_step({"action": "approval", "runId": run.id, "attempt": 0, "token": TOKEN},
             settings=settings, store=store, sealer=None)  # type: ignore[arg-type]
    assert store.run_status(run.id) is Status.WAITING
    return run.id


def test_approve_completes_the_step_and_sends_the_token_back(api: Api):
    run_id = parked_run(api)

    response = api.client.post(f"{RUNS}/{run_id}/steps/review/approve", headers=api.headers(),
                               json={"comment": "fine", "outputs": {"ticket": 42}})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["workflowRun"]["status"] == "running"
    [review] = body["workflowRun"]["activityRuns"]
    assert review["status"] == "completed"
    assert {k: review["outputs"][k] for k in ("approved", "comment", "ticket")} == {
        "approved": True, "comment": "fine", "ticket": 42}
    assert api.orchestrator.callbacks == [("success", TOKEN, f'{{"runId": "{run_id}"}}')]
    assert TOKEN not in response.text


def test_a_second_decision_is_409_and_sends_the_stored_approval_again_while_the_run_has_not_moved(api: Api):
    # The fake orchestrator never moves the run on: as if the first callback had been lost
    run_id = parked_run(api)
    assert api.client.post(f"{RUNS}/{run_id}/steps/review/approve", headers=api.headers()).status_code == 200

    for verb in ("approve", "reject"):
        response = api.client.post(f"{RUNS}/{run_id}/steps/review/{verb}", headers=api.headers(), json={})
        assert response.status_code == 409, response.text
        assert response.json() == {"success": False, "error": "Conflict",
                                   "details": "step review was decided already"}
    # Each repeat re-sends the decision stored (an approval, whatever the repeat asked for)
    assert api.orchestrator.callbacks == [("success", TOKEN, f'{{"runId": "{run_id}"}}')] * 3
    assert api.store.run_status(run_id) is Status.RUNNING


def test_a_second_decision_after_the_run_moved_on_sends_nothing(api: Api):
    # Given a run approved at its first step and now waiting at its second
    two = {**WORKFLOW, "steps": [WORKFLOW["steps"][0], {"id": "sign-off", "type": "approval",
                                                        "config": {"prompt": "Sign off?"}}]}
    workflow_id = api.put_workflow("t1", two)
    run = api.service.start_run("t1", ExecuteRequest(workflow_id=workflow_id, inputs={"topic": "tides"}))
    settings, store = api.service.settings, api.store
    for step, token in (("review", TOKEN), ("sign-off", "second-token")):
        run_step({"runId": run.id}, settings=settings, store=store, sealer=None)  # type: ignore[arg-type]
        run_step({"action": "approval", "runId": run.id, "attempt": 0, "token": token},
                 settings=settings, store=store, sealer=None)  # type: ignore[arg-type]
        if step == "review":
            approved = api.client.post(f"{RUNS}/{run.id}/steps/review/approve", headers=api.headers())
            assert approved.status_code == 200, approved.text
    assert store.run_status(run.id) is Status.WAITING

    # When the first step's approval is repeated
    response = api.client.post(f"{RUNS}/{run.id}/steps/review/approve", headers=api.headers(), json={})

    # Then 409, and its token is not sent again: the execution had it
    assert response.status_code == 409, response.text
    assert response.json()["details"] == "step review is not waiting for a decision"
    assert api.orchestrator.callbacks == [("success", TOKEN, f'{{"runId": "{run.id}"}}')]


def test_reject_on_the_internal_listener_fails_the_step_and_the_run(api: Api):
    run_id = parked_run(api)
    internal = TestClient(create_app(settings=api.service.settings, service=api.service, internal_listener=True))

    response = internal.post(f"{RUNS}/{run_id}/steps/review/reject", headers={"X-Tenant-Id": "t1"},
                             json={"comment": "not this week"})

    assert response.status_code == 200, response.text
    run = response.json()["workflowRun"]
    assert run["status"] == "failed"
    assert run["error"] == {"message": "not this week", "stepId": "review"}
    assert run["activityRuns"][0]["status"] == "failed"
    assert api.orchestrator.callbacks == [("failure", TOKEN, "ApprovalRejected")]


def test_another_tenant_an_unknown_run_or_step_is_404_on_both_listeners(api: Api):
    run_id = parked_run(api)
    internal = TestClient(create_app(settings=api.service.settings, service=api.service, internal_listener=True))
    for verb in ("approve", "reject"):
        assert api.client.post(f"{RUNS}/{run_id}/steps/review/{verb}", headers=api.headers("t2")).status_code == 404
        assert internal.post(f"{RUNS}/{run_id}/steps/review/{verb}",
                             headers={"X-Tenant-Id": "t2"}).status_code == 404
        assert api.client.post(f"{RUNS}/{uuid.uuid4()}/steps/review/{verb}",
                               headers=api.headers()).status_code == 404
        assert api.client.post(f"{RUNS}/{run_id}/steps/nope/{verb}", headers=api.headers()).status_code == 404
    assert api.store.run_status(run_id) is Status.WAITING and api.orchestrator.callbacks == []


def test_a_step_that_does_not_wait_for_a_decision_is_409(api: Api):
    run_id = parked_run(api)
    response = api.client.post(f"{RUNS}/{run_id}/steps/after/approve", headers=api.headers())
    assert response.status_code == 409 and response.json()["error"] == "Conflict"


@pytest.mark.parametrize("path, body", [
    ("approve", {"comment": "x" * 2001}),
    ("approve", {"outputs": {"approved": False}}),
    ("approve", {"outputs": {"blob": "x" * (17 * 1024)}}),
    ("approve", {"outputs": "not an object"}),
    ("approve", {"extra": 1}),
    ("reject", {"outputs": {"a": 1}}),
])
def test_bad_bodies_are_400_and_decide_nothing(api: Api, path: str, body: dict):
    run_id = parked_run(api)
    response = api.client.post(f"{RUNS}/{run_id}/steps/review/{path}", headers=api.headers(), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "ValidationError"
    assert api.store.run_status(run_id) is Status.WAITING and api.orchestrator.callbacks == []


def test_bad_ids_are_400_and_no_credential_is_401(api: Api):
    assert api.client.post(f"{RUNS}/not-a-uuid/steps/review/approve", headers=api.headers()).status_code == 400
    assert api.client.post(f"{RUNS}/{uuid.uuid4()}/steps/9bad/approve", headers=api.headers()).status_code == 400
    assert api.client.post(f"{RUNS}/{uuid.uuid4()}/steps/review/approve").status_code == 401


def test_a_rejection_counts_the_run_it_ends(api: Api, capsys: pytest.CaptureFixture[str]):
    """The run ends in the API here (not in the step runner): RunsEnded{failed} is emitted
    by the invocation that decided it."""
    run_id = parked_run(api)
    capsys.readouterr()

    def invocation(_event: object, _context: object) -> int:
        return api.client.post(f"{RUNS}/{run_id}/steps/review/reject", headers=api.headers(), json={}).status_code

    assert telemetry.instrument(telemetry.API, invocation)({}, None) == 200

    ended = [m for m in metrics(capsys.readouterr().out) if m.name == "RunsEnded"]
    assert [m.dimensions for m in ended] == [{"service": "api", "Status": "failed", "RunClass": "standard"}]
