"""Retry of a failed run and workflow edits that cannot clobber, through the API app (moto's
DynamoDB, the recording orchestrator). The runs are moved by the store, as the step runner
would move them; the real runner and state machine drive retries in tests/integration."""

from __future__ import annotations

import uuid

import pytest
from workflow_runs.models import ActivityRun, RunError, Status, utc_now
from workflow_runs.service import ExecuteRequest

from tests.api.conftest import Api

RUNS = "/api/v1/workflow-runs"
WORKFLOWS = "/api/v1/workflows"
THREE_STEPS = {
    "name": "Three steps",
    "inputs": [{"name": "topic", "type": "string", "required": True}],
    "steps": [
        {"id": "a", "type": "transform", "config": {"output": "{{ inputs.topic }}"}},
        {"id": "b", "type": "transform", "config": {"output": "b"}},
        {"id": "c", "type": "transform", "config": {"output": "c"}},
    ],
}


def failed_run(api: Api, tenant: str = "t1", *, envs: dict[str, str] | None = None,
               fail_at: int = 1) -> tuple[str, str]:
    """A run of THREE_STEPS whose steps before `fail_at` completed and whose step `fail_at`
    failed (its first attempt failed too, then a second one), as the step runner leaves it."""
    workflow_id = api.put_workflow(tenant, THREE_STEPS)
    record = api.store.get_run_record(api.service.start_run(
        tenant, ExecuteRequest(workflow_id=workflow_id, inputs={"topic": "tides"}, envs=envs or {})).id)
    store, run_id, now = api.store, record.id, utc_now()

    def activity(step: str, status: Status, attempt: int = 1, outputs: dict | None = None) -> ActivityRun:
        return ActivityRun(id=str(uuid.uuid4()), step_id=step, step_name=None, status=status, attempt=attempt,
                           outputs=outputs, created_at=now, updated_at=now)

    first = activity("a", Status.RUNNING)
    record = store.transition_run(record, Status.RUNNING, activities=[(0, first, None)])
    for index in range(fail_at + 1):
        step = THREE_STEPS["steps"][index]["id"]
        if index:
            opened = activity(step, Status.RUNNING)
            assert store.put_activity(run_id, index, opened)
        else:
            opened = first
        if index < fail_at:
            assert store.finish_activity(run_id, index, opened.model_copy(
                update={"status": Status.COMPLETED, "outputs": {"value": f"{step}-out"}}), [Status.RUNNING])
        else:
            assert store.finish_activity(run_id, index, opened.model_copy(
                update={"status": Status.FAILED, "outputs": {"error": "boom"}}), [Status.RUNNING])
    store.transition_run(store.get_run_record(run_id), Status.FAILED, error=RunError(message="boom", step_id="b"))
    return workflow_id, run_id


def test_retry_starts_a_new_run_that_reuses_the_completed_steps(api: Api):
    workflow_id, run_id = failed_run(api)

    response = api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers())

    assert response.status_code == 202, response.text
    retry = response.json()["workflowRun"]
    assert response.json()["success"] is True
    assert response.headers["Location"] == f"{RUNS}/{retry['id']}"
    assert retry["id"] != run_id and retry["retryOf"] == run_id and retry["retriedBy"] is None
    assert (retry["workflowId"], retry["status"]) == (workflow_id, "scheduled")
    assert retry["inputs"] == [{"name": "topic", "value": "tides"}]
    # Step a completed in the failed run: copied, marked reused, with its outputs; b and c are not.
    [reused] = retry["activityRuns"]
    assert (reused["stepId"], reused["status"], reused["reused"], reused["outputs"]) == (
        "a", "completed", True, {"value": "a-out"})
    source = api.client.get(f"{RUNS}/{run_id}", headers=api.headers()).json()["workflowRun"]
    assert reused["id"] not in [a["id"] for a in source["activityRuns"]]
    assert api.orchestrator.started[-1] == retry["id"]
    # The failed run stays failed and names its retry.
    assert (source["status"], source["retriedBy"], source["retryOf"]) == ("failed", retry["id"], None)
    assert all(a["reused"] is False for a in source["activityRuns"])


def test_retry_keeps_the_workflow_version_the_failed_run_ran(api: Api):
    workflow_id, run_id = failed_run(api)
    changed = {**THREE_STEPS, "steps": THREE_STEPS["steps"][:1]}
    assert api.client.put(f"{WORKFLOWS}/{workflow_id}", json=changed, headers=api.headers()).json()[
        "workflow"]["version"] == 2

    retry = api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers()).json()["workflowRun"]

    assert api.store.get_run_record(retry["id"]).workflow_version == 1
    assert [s.id for s in api.store.get_run_record(retry["id"]).steps] == ["a", "b", "c"]


def test_retry_carries_the_sealed_envs_bound_to_the_failed_run(api: Api):
    _, run_id = failed_run(api, envs={"TOKEN": "s3cret"})

    retry_id = api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers()).json()["workflowRun"]["id"]

    source, retry = api.store.get_run_record(run_id), api.store.get_run_record(retry_id)
    assert retry.sealed_envs == source.sealed_envs and retry.sealed_for == run_id
    from workflow_runs.secrets import get_sealer

    assert get_sealer(api.service.settings).unseal(retry.sealed_envs, retry.sealed_for) == {"TOKEN": "s3cret"}


def test_a_retry_of_a_retry_stays_bound_to_the_first_runs_envs(api: Api):
    _, run_id = failed_run(api, envs={"TOKEN": "s3cret"})
    retry_id = api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers()).json()["workflowRun"]["id"]
    api.store.transition_run(api.store.get_run_record(retry_id), Status.FAILED, error=RunError(message="again"))

    second = api.client.post(f"{RUNS}/{retry_id}/retry", headers=api.headers())

    assert second.status_code == 202
    assert second.json()["workflowRun"]["retryOf"] == retry_id
    assert api.store.get_run_record(second.json()["workflowRun"]["id"]).sealed_for == run_id


@pytest.mark.parametrize("status", [Status.SCHEDULED, Status.RUNNING, Status.COMPLETED, Status.CANCELLED])
def test_retry_of_a_run_that_is_not_failed_is_409(api: Api, status: Status):
    workflow_id = api.put_workflow()
    record = api.store.get_run_record(
        api.service.start_run("t1", ExecuteRequest(workflow_id=workflow_id, inputs={"topic": "x"})).id)
    if status is not Status.SCHEDULED:
        record = api.store.transition_run(record, Status.RUNNING)
    if status in (Status.COMPLETED, Status.CANCELLED):
        api.store.transition_run(record, status)

    response = api.client.post(f"{RUNS}/{record.id}/retry", headers=api.headers())

    assert response.status_code == 409 and response.json()["error"] == "Conflict"
    assert f"is {status.value}; only a failed run can be retried" in response.json()["details"]
    assert api.store.get_run(api.store.get_run_record(record.id).tenant, record.id).retried_by is None


def test_second_retry_of_the_same_run_is_409_naming_the_first(api: Api):
    _, run_id = failed_run(api)
    first = api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers()).json()["workflowRun"]["id"]

    again = api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers())

    assert again.status_code == 409
    assert again.json()["details"] == f"workflow run {run_id} was already retried by run {first}"
    assert api.client.get(RUNS, headers=api.headers()).json()["pagination"]["total"] == 2


def test_retry_with_the_same_idempotency_key_replays_the_first_retry(api: Api):
    _, run_id = failed_run(api)
    headers = {**api.headers(), "Idempotency-Key": "retry-once"}

    first = api.client.post(f"{RUNS}/{run_id}/retry", headers=headers)
    again = api.client.post(f"{RUNS}/{run_id}/retry", headers=headers)
    other_key = api.client.post(f"{RUNS}/{run_id}/retry", headers={**api.headers(), "Idempotency-Key": "k2"})

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["workflowRun"]["id"] == first.json()["workflowRun"]["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert other_key.status_code == 409  # a new key is a new request: the run was retried already
    assert api.client.get(RUNS, headers=api.headers()).json()["pagination"]["total"] == 2


def test_an_idempotency_key_of_an_execute_does_not_replay_as_a_retry(api: Api):
    workflow_id, run_id = failed_run(api)
    headers = {**api.headers(), "Idempotency-Key": "shared"}
    assert api.client.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}},
                           headers=headers).status_code in (200, 202)

    response = api.client.post(f"{RUNS}/{run_id}/retry", headers=headers)

    assert response.status_code == 409
    assert "different request" in response.json()["details"]
    assert api.store.get_run("t1", run_id).retried_by is None


def test_retry_of_another_tenants_run_is_404_and_changes_nothing(api: Api):
    _, run_id = failed_run(api, tenant="owner")

    response = api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers("intruder"))

    assert response.status_code == 404 and response.json()["error"] == "NotFound"
    assert api.store.get_run("owner", run_id).retried_by is None
    assert api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers("owner")).status_code == 202


@pytest.mark.parametrize("run_id", ["not-a-uuid", "6f0c2b1e-9d4a-4c3b-8e2f-1a7d5c9b3e40"], ids=["bad", "unknown"])
def test_retry_of_a_bad_or_unknown_run_id_is_400_or_404(api: Api, run_id: str):
    response = api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers())
    assert response.status_code == (400 if run_id == "not-a-uuid" else 404)


def test_retry_needs_a_credential(api: Api):
    _, run_id = failed_run(api)
    assert api.client.post(f"{RUNS}/{run_id}/retry").status_code == 401


def test_retry_whose_start_fails_ends_failed_and_the_source_stays_retried(api: Api):
    _, run_id = failed_run(api)
    api.orchestrator.fail_start = True

    response = api.client.post(f"{RUNS}/{run_id}/retry", headers=api.headers())

    assert response.status_code == 202
    retry = response.json()["workflowRun"]
    assert retry["status"] == "failed" and "could not be started" in retry["error"]["message"]
    assert api.store.get_run("t1", run_id).retried_by == retry["id"]


# ------------------------------------------------------------------ workflow edits


def test_put_of_what_get_returned_is_accepted_and_bumps_the_version(api: Api):
    workflow_id = api.put_workflow(body=THREE_STEPS)
    got = api.client.get(f"{WORKFLOWS}/{workflow_id}", headers=api.headers())
    assert got.headers["ETag"] == '"1"'
    edited = {**got.json()["workflow"], "name": "Renamed"}

    put = api.client.put(f"{WORKFLOWS}/{workflow_id}", json=edited, headers=api.headers())

    assert put.status_code == 200, put.text
    assert put.json()["workflow"]["version"] == 2 and put.json()["workflow"]["name"] == "Renamed"
    assert put.headers["ETag"] == '"2"'
    assert put.json()["workflow"]["createdAt"] == got.json()["workflow"]["createdAt"]
    assert api.client.get(f"{WORKFLOWS}/{workflow_id}", headers=api.headers()).headers["ETag"] == '"2"'


def test_put_with_a_stale_version_is_409_and_changes_nothing(api: Api):
    workflow_id = api.put_workflow(body=THREE_STEPS)
    stale = api.client.get(f"{WORKFLOWS}/{workflow_id}", headers=api.headers()).json()["workflow"]
    assert api.client.put(f"{WORKFLOWS}/{workflow_id}", json={**stale, "name": "First editor"},
                          headers=api.headers()).status_code == 200

    second = api.client.put(f"{WORKFLOWS}/{workflow_id}", json={**stale, "name": "Second editor"},
                            headers=api.headers())

    assert second.status_code == 409 and second.json()["error"] == "Conflict"
    assert "is at version 2, not 1" in second.json()["details"]
    stored = api.client.get(f"{WORKFLOWS}/{workflow_id}", headers=api.headers()).json()["workflow"]
    assert (stored["name"], stored["version"]) == ("First editor", 2)


def test_if_match_is_a_precondition_like_the_body_version(api: Api):
    workflow_id = api.put_workflow(body=THREE_STEPS)

    stale = api.client.put(f"{WORKFLOWS}/{workflow_id}", json=THREE_STEPS,
                           headers={**api.headers(), "If-Match": '"7"'})
    current = api.client.put(f"{WORKFLOWS}/{workflow_id}", json=THREE_STEPS,
                             headers={**api.headers(), "If-Match": '"1"'})

    assert stale.status_code == 409
    assert current.status_code == 200 and current.headers["ETag"] == '"2"'


def test_if_match_and_body_version_that_disagree_are_409(api: Api):
    workflow_id = api.put_workflow(body=THREE_STEPS)
    response = api.client.put(f"{WORKFLOWS}/{workflow_id}", json={**THREE_STEPS, "version": 1},
                              headers={**api.headers(), "If-Match": '"2"'})
    assert response.status_code == 409
    assert api.client.get(f"{WORKFLOWS}/{workflow_id}", headers=api.headers()).json()["workflow"]["version"] == 1


@pytest.mark.parametrize("value", ["1", 'W/"1"', "*", '"1", "2"', '"0"', '"x"'])
def test_if_match_that_is_not_one_quoted_version_is_400(api: Api, value: str):
    workflow_id = api.put_workflow(body=THREE_STEPS)
    response = api.client.put(f"{WORKFLOWS}/{workflow_id}", json=THREE_STEPS,
                              headers={**api.headers(), "If-Match": value})
    assert response.status_code == 400 and "If-Match" in str(response.json()["details"])


def test_put_whose_id_is_not_the_paths_is_400(api: Api):
    workflow_id = api.put_workflow(body=THREE_STEPS)
    response = api.client.put(f"{WORKFLOWS}/{workflow_id}", json={**THREE_STEPS, "id": str(uuid.uuid4())},
                              headers=api.headers())
    assert response.status_code == 400 and "id: must be the workflow id of the path" in str(response.json()["details"])


def test_put_with_a_version_of_a_workflow_that_does_not_exist_is_409(api: Api):
    workflow_id = str(uuid.uuid4())
    response = api.client.put(f"{WORKFLOWS}/{workflow_id}", json={**THREE_STEPS, "version": 1},
                              headers=api.headers())
    assert response.status_code == 409
    assert api.client.get(f"{WORKFLOWS}/{workflow_id}", headers=api.headers()).status_code == 404


def test_put_without_a_precondition_replaces_as_before(api: Api):
    workflow_id = api.put_workflow(body=THREE_STEPS)
    for version in (2, 3):
        put = api.client.put(f"{WORKFLOWS}/{workflow_id}", json=THREE_STEPS, headers=api.headers())
        assert put.json()["workflow"]["version"] == version


def test_put_with_another_tenants_version_does_not_touch_it(api: Api):
    workflow_id = api.put_workflow(tenant="owner", body=THREE_STEPS)
    response = api.client.put(f"{WORKFLOWS}/{workflow_id}", json={**THREE_STEPS, "name": "Mine", "version": 1},
                              headers=api.headers("intruder"))
    assert response.status_code == 409  # the intruder's own namespace has no such workflow
    assert api.client.get(f"{WORKFLOWS}/{workflow_id}", headers=api.headers("owner")).json()[
        "workflow"]["name"] == "Three steps"
