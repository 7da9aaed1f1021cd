"""Threat: bad input that gave 500. Each body below broke a parser, a serialiser or DynamoDB
after validation passed; each must be a clear 400 or 413 with the uniform error, and leave
nothing stored."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
from fastapi.testclient import TestClient
from workflow_runs.models import WorkflowDefinition
from workflow_runs.service import MAX_RUN_CONTENT_BYTES, ListQuery
from workflow_runs_api.app import create_app

from tests.api.conftest import WORKFLOW, Api

RUNS = "/api/v1/workflow-runs"
JSON = {"content-type": "application/json"}
BODY_LIMIT = 256 * 1024
WORKFLOW_ID = "6f1c2d3e-4b5a-4c6d-8e7f-8091a2b3c4d5"  # the test's workflow (inputs: one object)


def deep_array(levels: int) -> str:
    return "[" * levels + "]" * levels


def deep_object(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"a": value}
    return value


def execute_json(text: str) -> tuple[str, str, dict]:
    return "post", f"{RUNS}/execute", {"content": text.encode(), "headers": JSON}


def with_topic(value_json: str) -> str:
    return f'{{"workflowId": "{WORKFLOW_ID}", "inputs": {{"topic": {value_json}}}}}'


def put_workflow(text: str) -> tuple[str, str, dict]:
    return "put", f"/api/v1/workflows/{uuid.uuid4()}", {"content": text.encode(), "headers": JSON}


def streamed(total: int):
    """A JSON-looking body sent without a length, in chunks, past the limit."""
    yield b'{"reason": "'
    for _ in range(total // 65536 + 1):
        yield b"x" * 65536


CASES = {
    "JSON body nested 50,000 deep": (execute_json(with_topic(deep_array(50_000))), 400, "nested deeper"),
    "form field nested 50,000 deep": (("post", f"{RUNS}/execute", {"files": {
        "workflowId": (None, WORKFLOW_ID), "inputs": (None, f'{{"topic": {deep_array(50_000)}}}')}}),
        400, "inputs: nested deeper"),
    "inputs nested 300 deep": (execute_json(with_topic(json.dumps(deep_object(300)))), 400, "nested deeper"),
    "workflow nested 300 deep": (put_workflow(json.dumps(
        {**WORKFLOW, "steps": [{"id": "a", "type": "transform", "config": {"output": deep_object(300)}}]})),
        400, "nested deeper"),
    "PUT body nested 50,000 deep": (put_workflow(deep_array(50_000)), 400, "nested deeper"),
    "cancel body nested 50,000 deep": (("post", f"{RUNS}/cancel", {"content": deep_array(50_000).encode(),
                                                                    "headers": JSON}), 400, "nested deeper"),
    "5,000-digit integer": (execute_json(with_topic('{"n": %s}' % ("9" * 5000))), 400, "100 digits"),
    "lone surrogate in inputs": (execute_json(with_topic('{"s": "\\ud800"}')), 400, "surrogate"),
    "lone surrogate in a form field": (("post", f"{RUNS}/execute", {"files": {
        "workflowId": (None, WORKFLOW_ID), "inputs": (None, '{"topic": {"s": "\\udfff"}}')}}), 400, "surrogate"),
    "lone surrogate in a step config": (put_workflow(json.dumps(
        {**WORKFLOW, "steps": [{"id": "a", "type": "transform", "config": {"output": "\ud800"}}]})),
        400, "surrogate"),
    "NaN": (execute_json(with_topic('{"n": NaN}')), 400, "NaN is not a JSON number"),
    "Infinity": (execute_json(with_topic('{"n": Infinity}')), 400, "Infinity is not a JSON number"),
    "-Infinity": (execute_json(with_topic('{"n": -Infinity}')), 400, "-Infinity is not a JSON number"),
    "a float that overflows to Infinity": (execute_json(with_topic('{"n": 1e400}')), 400, "too large"),
    "streamed oversized cancel body": (("post", f"{RUNS}/cancel", {"content": streamed(BODY_LIMIT), "headers": JSON}),
                                       413, "bytes"),
    "streamed oversized PUT workflow body": (("put", f"/api/v1/workflows/{uuid.uuid4()}", {
        "content": streamed(BODY_LIMIT), "headers": JSON}), 413, "bytes"),
}


@pytest.fixture
def api_with_workflow(api: Api) -> Api:
    """The API with the documented body limit (256 KiB: a body nested 50 000 deep fits) and
    one workflow whose input is an object."""
    settings = api.service.settings.model_copy(update={"max_body_bytes": BODY_LIMIT})
    app = create_app(settings=settings, service=api.service, verifier=api.identity.verifier(settings))
    api.put_workflow(body={**WORKFLOW, "inputs": [{"name": "topic", "type": "object"}]}, workflow_id=WORKFLOW_ID)
    return dataclasses.replace(api, client=TestClient(app))


def assert_nothing_stored(api: Api) -> None:
    assert api.service.list_runs("t1", ListQuery())[0].total == 0
    assert api.orchestrator.started == []
    workflows, _ = api.service.list_workflows("t1", 1, 10)
    assert [w.id for w in workflows] == [WORKFLOW_ID] and workflows[0].version == 1


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_clear_4xx_and_nothing_is_stored(api_with_workflow: Api, case: str):
    (method, path, kwargs), status, says = CASES[case]
    api = api_with_workflow
    response = getattr(api.client, method)(path, **{**kwargs, "headers": {**api.headers(), **kwargs.get("headers", {})}})
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"] == {400: "ValidationError", 413: "PayloadTooLarge"}[status]
    assert says in json.dumps(body["details"], ensure_ascii=False), body
    assert "Traceback" not in response.text and "JSONDecodeError" not in response.text
    assert_nothing_stored(api)


def test_a_run_that_would_not_fit_a_dynamodb_item_is_413_before_anything_is_written(api_with_workflow: Api):
    # Given an operator who raised the body limit to 1 MiB, and inputs that fit the body but
    # not a DynamoDB item
    api = api_with_workflow
    settings = api.service.settings.model_copy(update={"max_body_bytes": 1024 * 1024})
    client = TestClient(create_app(settings=settings, service=api.service, verifier=api.identity.verifier(settings)))
    big_workflow = str(uuid.uuid4())
    api.put_workflow(body={**WORKFLOW, "inputs": [{"name": "topic", "type": "string"}]}, workflow_id=big_workflow)
    body = {"workflowId": big_workflow, "inputs": {"topic": "x" * 500_000}}

    # When it is executed
    response = client.post(f"{RUNS}/execute", json=body, headers=api.headers())

    # Then it is refused with its size, and no run was written or started
    assert response.status_code == 413, response.text
    details = response.json()["details"]
    assert response.json()["error"] == "PayloadTooLarge" and f"at most {MAX_RUN_CONTENT_BYTES}" in details
    assert api.service.list_runs("t1", ListQuery())[0].total == 0
    assert api.orchestrator.started == []


def test_ordinary_numbers_and_text_still_pass(api_with_workflow: Api):
    api = api_with_workflow
    value = {"big": 10 ** 99, "float": 1.5e300, "neg": -0.0, "text": "émoji 🙂", "nested": deep_object(60)}
    response = api.client.post(f"{RUNS}/execute", json={"workflowId": WORKFLOW_ID, "inputs": {"topic": value}},
                               headers=api.headers())
    assert response.status_code in (200, 202), response.text
    assert response.json()["workflowRun"]["inputs"] == [{"name": "topic", "value": value}]


def test_the_definition_used_above_is_valid():
    WorkflowDefinition.model_validate({**WORKFLOW, "inputs": [{"name": "topic", "type": "object"}]})
