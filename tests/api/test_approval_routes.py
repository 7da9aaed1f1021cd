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


def parked_run(api: Api, tenant: str = "t1", workflow: dict | None = None) -> str:
    """A run whose approval step waits: started, then the Approval state's invocation."""
    workflow_id = api.put_workflow(tenant, workflow or WORKFLOW)
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
    # Issue 28: the server's fields and the prompt the person was shown cannot be forged.
    ("approve", {"outputs": {"decidedBy": "the-cfo"}}),
    ("approve", {"outputs": {"prompt": "Publish nothing?"}}),
    ("approve", {"outputs": {"decidedAt": "2020-01-01T00:00:00.000Z"}}),
    ("approve", {"outputs": {"comment": "forged"}}),
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


# --- issue 28: who decided, and who may --------------------------------------------------------


def _review(run: dict) -> dict:
    return next(a for a in run["activityRuns"] if a["stepId"] == "review")


def test_the_stored_decision_names_the_caller_and_keeps_the_prompt(api: Api):
    run_id = parked_run(api)
    token = api.identity.token(tenant="t1", subject="ana@example.com")

    response = api.client.post(f"{RUNS}/{run_id}/steps/review/approve", headers={"Authorization": f"Bearer {token}"},
                               json={"outputs": {"ticket": 42}})

    assert response.status_code == 200, response.text
    stored = _review(api.service.get_run("t1", run_id).model_dump(by_alias=True))["outputs"]
    assert stored["decidedBy"] == "ana@example.com"
    assert stored["prompt"] == "Publish tides?" and stored["ticket"] == 42 and stored["approved"] is True
    assert _review(response.json()["workflowRun"])["outputs"]["decidedBy"] == "ana@example.com"


def test_an_internal_callers_decision_is_by_internal(api: Api):
    run_id = parked_run(api)
    internal = TestClient(create_app(settings=api.service.settings, service=api.service, internal_listener=True))

    response = internal.post(f"{RUNS}/{run_id}/steps/review/reject", headers={"X-Tenant-Id": "t1"})

    assert response.status_code == 200, response.text
    assert _review(response.json()["workflowRun"])["outputs"]["decidedBy"] == "internal"


GATED = {**WORKFLOW, "steps": [
    {"id": "review", "type": "approval", "config": {"prompt": "Publish {{ inputs.topic }}?",
                                                     "approvers": ["ana@example.com", "internal"]}},
    {"id": "after", "type": "transform", "config": {"output": "done"}}]}


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_a_caller_not_among_the_approvers_is_403_and_decides_nothing(api: Api, verb: str):
    run_id = parked_run(api, workflow=GATED)
    starter = api.identity.token(tenant="t1", subject="dev-user")  # who started the run, say

    response = api.client.post(f"{RUNS}/{run_id}/steps/review/{verb}", headers={"Authorization": f"Bearer {starter}"})

    assert response.status_code == 403, response.text
    assert response.json() == {"success": False, "error": "Forbidden",
                               "details": "step review may be decided only by its approvers"}
    assert api.store.run_status(run_id) is Status.WAITING and api.orchestrator.callbacks == []


def test_a_listed_approver_and_a_listed_internal_caller_may_decide(api: Api):
    ana = api.identity.token(tenant="t1", subject="ana@example.com")
    run_id = parked_run(api, workflow=GATED)
    response = api.client.post(f"{RUNS}/{run_id}/steps/review/approve", headers={"Authorization": f"Bearer {ana}"})
    assert response.status_code == 200, response.text
    assert _review(response.json()["workflowRun"])["outputs"]["decidedBy"] == "ana@example.com"

    internal = TestClient(create_app(settings=api.service.settings, service=api.service, internal_listener=True))
    other = parked_run(api, workflow=GATED)
    response = internal.post(f"{RUNS}/{other}/steps/review/approve", headers={"X-Tenant-Id": "t1"})
    assert response.status_code == 200, response.text


def test_approvers_are_403_before_anything_is_said_about_the_step(api: Api):
    run_id = parked_run(api, workflow=GATED)
    ana = api.identity.token(tenant="t1", subject="ana@example.com")
    assert api.client.post(f"{RUNS}/{run_id}/steps/review/approve",
                           headers={"Authorization": f"Bearer {ana}"}).status_code == 200
    bob = api.identity.token(tenant="t1", subject="bob@example.com")
    # Decided already: ana hears 409, bob (not an approver) 403.
    assert api.client.post(f"{RUNS}/{run_id}/steps/review/approve",
                           headers={"Authorization": f"Bearer {ana}"}).status_code == 409
    assert api.client.post(f"{RUNS}/{run_id}/steps/review/approve",
                           headers={"Authorization": f"Bearer {bob}"}).status_code == 403


@pytest.mark.parametrize("config, problem", [
    ({"prompt": "ok?", "approvers": []}, "config.approvers must be a list of 1 to 100 subjects"),
    ({"prompt": "ok?", "approvers": [3]}, "config.approvers must be a list"),
    ({"prompt": "ok?", "reuseOnRetry": "true"}, "config.reuseOnRetry must be true or false"),
])
def test_put_validates_approvers_and_reuse_on_retry(api: Api, config: dict, problem: str):
    body = {**WORKFLOW, "steps": [{"id": "review", "type": "approval", "config": config}]}
    response = api.client.put(f"/api/v1/workflows/{uuid.uuid4()}", headers=api.headers(), json=body)
    assert response.status_code == 400, response.text
    assert problem in str(response.json()["details"])
    ok = {**WORKFLOW, "steps": [{"id": "review", "type": "approval",
                                  "config": {"prompt": "ok?", "approvers": ["ana"], "reuseOnRetry": True}}]}
    assert api.client.put(f"/api/v1/workflows/{uuid.uuid4()}", headers=api.headers(), json=ok).status_code == 200


def _failed_after_approval(api: Api, reuse: bool | None) -> str:
    """A run whose approval was granted and whose next step then failed, as the runner leaves it."""
    config: dict = {"prompt": "Publish {{ inputs.topic }}?"}
    if reuse is not None:
        config["reuseOnRetry"] = reuse
    workflow = {**WORKFLOW, "steps": [{"id": "review", "type": "approval", "config": config},
                                      {"id": "after", "type": "fail", "config": {"message": "boom"}}]}
    run_id = parked_run(api, workflow=workflow)
    assert api.client.post(f"{RUNS}/{run_id}/steps/review/approve", headers=api.headers()).status_code == 200
    settings, store = api.service.settings, api.store
    run_step({"runId": run_id}, settings=settings, store=store, sealer=None)  # type: ignore[arg-type]
    assert store.run_status(run_id) is Status.FAILED
    return run_id


@pytest.mark.parametrize("reuse", [None, False])
def test_a_retry_asks_the_approval_again(api: Api, reuse: bool | None):
    run_id = _failed_after_approval(api, reuse)

    response = api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers())

    assert response.status_code == 202, response.text
    retry = response.json()["workflowRun"]
    assert retry["activityRuns"] == []  # the earlier decision is not carried over
    reply = run_step({"runId": retry["id"]}, settings=api.service.settings, store=api.store,
                     sealer=None)  # type: ignore[arg-type]
    assert reply["next"] == "approval"  # the retry parks at the approval, asking again


def test_a_retry_keeps_the_decision_when_the_step_says_reuse_on_retry(api: Api):
    run_id = _failed_after_approval(api, True)

    response = api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers())

    assert response.status_code == 202, response.text
    [reused] = response.json()["workflowRun"]["activityRuns"]
    assert (reused["stepId"], reused["reused"], reused["outputs"]["decidedBy"]) == ("review", True, "dev-user")


def _throttled(times: int, send: object) -> object:
    """`send`, refused with Step Functions' throttle past botocore's retries `times` times first."""
    from botocore.exceptions import ClientError

    refusals = [times]

    def sending(*args: object) -> None:
        if refusals[0] > 0:
            refusals[0] -= 1
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "SendTaskSuccess")
        send(*args)  # type: ignore[operator]

    return sending


@pytest.mark.parametrize("refusals, told", [(3, True), (6, False)])
def test_a_throttled_callback_is_sent_again_and_the_decision_stands_either_way(
        api: Api, monkeypatch: pytest.MonkeyPatch, refusals: int, told: bool):
    from workflow_runs import approvals

    waits: list[float] = []
    monkeypatch.setattr(approvals.time, "sleep", waits.append)
    monkeypatch.setattr(api.orchestrator, "send_task_success", _throttled(refusals, api.orchestrator.send_task_success))
    run_id = parked_run(api)

    response = api.client.post(f"{RUNS}/{run_id}/steps/review/approve", headers=api.headers(), json={})

    assert response.status_code == 200, response.text
    assert api.store.run_status(run_id) is Status.RUNNING  # the decision is stored either way
    assert waits == [0.2, 0.4, 0.8, 1.6, 2.0][:min(refusals, 5)]
    assert api.orchestrator.callbacks == ([("success", TOKEN, f'{{"runId": "{run_id}"}}')] if told else [])
    if not told:  # a repeated approve tells the execution again
        monkeypatch.delattr(api.orchestrator, "send_task_success")  # Step Functions answers again
        assert api.client.post(f"{RUNS}/{run_id}/steps/review/approve", headers=api.headers()).status_code == 409
        assert api.orchestrator.callbacks == [("success", TOKEN, f'{{"runId": "{run_id}"}}')]
