"""A table of bad inputs: each is a 4xx with the uniform error body and details that say
what to fix; none is a 5xx, none leaks internals."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.api.conftest import WORKFLOW, Api

RUNS = "/api/v1/workflow-runs"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def _execute_json(body):
    return ("post", f"{RUNS}/execute", {"json": body})


CASES = {
    # execute
    "execute without workflowId": (_execute_json({"inputs": {}}), 400, "workflowId"),
    "execute with a bad uuid": (_execute_json({"workflowId": "nope"}), 400, "workflowId"),
    "execute of an unknown workflow": (_execute_json({"workflowId": UNKNOWN}), 404, "workflow"),
    "execute with an unknown field": (_execute_json({"workflowId": "{wf}", "extra": 1}), 400, "extra"),
    "execute missing a required input": (_execute_json({"workflowId": "{wf}", "inputs": {}}), 400, "inputs.topic"),
    "execute with an unknown input": (_execute_json({"workflowId": "{wf}", "inputs": {"topic": "a", "x": 1}}), 400, "inputs.x"),
    "execute with a wrong input type": (_execute_json({"workflowId": "{wf}", "inputs": {"topic": 5}}), 400, "inputs.topic"),
    "execute with inputs not an object": (_execute_json({"workflowId": "{wf}", "inputs": [1]}), 400, "inputs"),
    "execute with a non-string env": (_execute_json({"workflowId": "{wf}", "inputs": {"topic": "a"}, "envs": {"K": 1}}), 400, "envs"),
    "execute with broken JSON": (("post", f"{RUNS}/execute", {"content": b"{", "headers": {"content-type": "application/json"}}), 400, "JSON"),
    "execute with a JSON array body": (("post", f"{RUNS}/execute", {"json": [1]}), 400, "object"),
    "execute with bad JSON in a form field": (("post", f"{RUNS}/execute", {"files": {"workflowId": (None, "{wf}"), "inputs": (None, "{nope")}}), 400, "inputs"),
    "execute with a file instead of a field": (("post", f"{RUNS}/execute", {"files": {"workflowId": (None, "{wf}"), "inputs": ("a.json", b"{}", "application/json")}}), 400, ""),
    "execute as text/plain": (("post", f"{RUNS}/execute", {"content": b"hi", "headers": {"content-type": "text/plain"}}), 400, "Content-Type"),
    "execute with a bad Idempotency-Key": (("post", f"{RUNS}/execute", {"json": {"workflowId": "{wf}"}, "headers": {"Idempotency-Key": "a b"}}), 400, "idempotency"),
    "execute over the body limit": (("post", f"{RUNS}/execute", {"json": {"workflowId": "{wf}", "inputs": {"topic": "x" * 70_000}}}), 413, "bytes"),
    # cancel
    "cancel with neither runIds nor workflowId": (("post", f"{RUNS}/cancel", {"json": {}}), 400, "exactly one"),
    "cancel with both": (("post", f"{RUNS}/cancel", {"json": {"runIds": [UNKNOWN], "workflowId": UNKNOWN}}), 400, "exactly one"),
    "cancel with an empty runIds": (("post", f"{RUNS}/cancel", {"json": {"runIds": []}}), 400, "runIds"),
    "cancel with 101 runIds": (("post", f"{RUNS}/cancel", {"json": {"runIds": [str(uuid.uuid4()) for _ in range(101)]}}), 400, "runIds"),
    "cancel with a bad run id": (("post", f"{RUNS}/cancel", {"json": {"runIds": ["x"]}}), 400, "runIds"),
    "cancel with a long reason": (("post", f"{RUNS}/cancel", {"json": {"runIds": [UNKNOWN], "reason": "r" * 501}}), 400, "reason"),
    "cancel of an unknown workflow": (("post", f"{RUNS}/cancel", {"json": {"workflowId": UNKNOWN}}), 404, "workflow"),
    # list
    "list with page 0": (("get", RUNS, {"params": {"page": 0}}), 400, "page"),
    "list with limit 101": (("get", RUNS, {"params": {"limit": 101}}), 400, "limit"),
    "list with limit 0": (("get", RUNS, {"params": {"limit": 0}}), 400, "limit"),
    "list with a non-number page": (("get", RUNS, {"params": {"page": "two"}}), 400, "page"),
    "list with an unknown status": (("get", RUNS, {"params": {"status": "done"}}), 400, "status"),
    "list with a bad workflowId": (("get", RUNS, {"params": {"workflowId": "x"}}), 400, "workflowId"),
    "list with an empty search": (("get", RUNS, {"params": {"search": ""}}), 400, "search"),
    # get / dashboard
    "get with a bad run id": (("get", f"{RUNS}/not-a-uuid", {}), 400, "runId"),
    "get of an unknown run": (("get", f"{RUNS}/{UNKNOWN}", {}), 404, "not found"),
    "dashboard with a bad id": (("get", f"{RUNS}/dashboard/x", {}), 400, "workflowId"),
    "dashboard of an unknown workflow": (("get", f"{RUNS}/dashboard/{UNKNOWN}", {}), 404, "not found"),
    # workflows
    "workflow with duplicate step ids": (("put", f"/api/v1/workflows/{UNKNOWN}", {"json": {**WORKFLOW, "steps": WORKFLOW["steps"] * 2}}), 400, "unique"),
    "workflow with an unknown step type": (("put", f"/api/v1/workflows/{UNKNOWN}", {"json": {**WORKFLOW, "steps": [{"id": "a", "type": "shell"}]}}), 400, "type"),
    "workflow with an unknown input type": (("put", f"/api/v1/workflows/{UNKNOWN}", {"json": {**WORKFLOW, "inputs": [{"name": "a", "type": "date"}]}}), 400, "type"),
    "workflow with a default of the wrong type": (("put", f"/api/v1/workflows/{UNKNOWN}", {"json": {**WORKFLOW, "inputs": [{"name": "a", "type": "integer", "default": "x"}]}}), 400, "default"),
    "workflow with no steps": (("put", f"/api/v1/workflows/{UNKNOWN}", {"json": {**WORKFLOW, "steps": []}}), 400, "steps"),
    "workflow with a bad wait config": (("put", f"/api/v1/workflows/{UNKNOWN}", {"json": {**WORKFLOW, "steps": [{"id": "w", "type": "wait", "config": {"seconds": -1}}]}}), 400, "seconds"),
    "workflow with too many attempts": (("put", f"/api/v1/workflows/{UNKNOWN}", {"json": {**WORKFLOW, "steps": [{"id": "w", "type": "fail", "retry": {"maxAttempts": 11}}]}}), 400, "maxAttempts"),
    "workflow with a bad id": (("put", "/api/v1/workflows/x", {"json": WORKFLOW}), 400, "workflowId"),
    "get of an unknown workflow": (("get", f"/api/v1/workflows/{UNKNOWN}", {}), 404, "not found"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_gets_a_clear_error(api: Api, case: str):
    (method, path, kwargs), status, hint = CASES[case]
    workflow_id = api.put_workflow()
    kwargs = _substitute(kwargs, workflow_id)
    headers = {**api.headers(), **kwargs.pop("headers", {})}
    response = getattr(api.client, method)(path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"] in {400: "ValidationError", 404: "NotFound", 413: "PayloadTooLarge"}[status]
    assert hint.lower() in json.dumps(body["details"]).lower()
    assert "Traceback" not in response.text


def _substitute(value, workflow_id: str):
    """The case table names the test's workflow `{wf}`; put its real id in."""
    if isinstance(value, str):
        return value.replace("{wf}", workflow_id)
    if isinstance(value, dict):
        return {k: _substitute(v, workflow_id) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_substitute(v, workflow_id) for v in value)
    return value
