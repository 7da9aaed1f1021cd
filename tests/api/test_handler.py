"""Each route once through the Lambda handler (Mangum) with real API Gateway REST proxy
events, on moto's DynamoDB and Step Functions, configured from the environment as in AWS."""

from __future__ import annotations

import json
import uuid

import boto3
from workflow_runs.settings import get_settings

from tests.api.conftest import WORKFLOW
from tests.api.lambda_events import INTERNAL, PRIVATE_API, RUNS, invoke, multipart, rest_event
from tests.auth_fixtures import TENANT_CLAIM


def test_every_route_through_the_lambda_handler(lambda_env: None, tokens):
    workflow_id = str(uuid.uuid4())
    status, _, body = invoke(rest_event("PUT", f"/api/v1/workflows/{workflow_id}", api_id=PRIVATE_API,
                                        headers={**INTERNAL, "Content-Type": "application/json"}, body=json.dumps(WORKFLOW)))
    assert status == 200 and body["workflow"]["version"] == 1

    form, content_type = multipart({"workflowId": workflow_id, "inputs": '{"topic": "tides"}'})
    status, headers, body = invoke(rest_event("POST", f"{RUNS}/execute", api_id=PRIVATE_API, base64_body=True,
                                              headers={**INTERNAL, "Content-Type": content_type}, body=form))
    assert status == 202, body
    run_id = body["workflowRun"]["id"]
    assert headers["location"] == f"/prod{RUNS}/{run_id}"  # the stage prefix the client sees
    # A one-step transform run is bound to end in seconds: `auto` starts it on the Express machine
    assert body["workflowRun"]["orchestration"] == "express"
    arn = get_settings().express_state_machine_arn
    executions = boto3.client("stepfunctions").list_executions(stateMachineArn=arn)
    assert [e["name"] for e in executions["executions"]] == [run_id]

    bearer = {"Authorization": f"Bearer {tokens.valid(**{TENANT_CLAIM: 'acme'})}"}
    status, _, body = invoke(rest_event("GET", f"{RUNS}/{run_id}", headers=bearer))
    assert status == 200 and body["workflowRun"]["inputs"][0] == {"name": "topic", "value": "tides"}

    status, _, body = invoke(rest_event("GET", RUNS, headers=bearer, query={"workflowId": workflow_id, "limit": "5"}))
    assert status == 200 and body["pagination"]["total"] == 1

    status, _, body = invoke(rest_event("GET", f"{RUNS}/dashboard/{workflow_id}", headers=bearer))
    assert status == 200 and body["counts"]["scheduled"] == 1

    status, _, body = invoke(rest_event("GET", f"/api/v1/workflows/{workflow_id}", headers=bearer))
    assert status == 200 and body["workflow"]["name"] == "Summarise"
    status, _, body = invoke(rest_event("GET", "/api/v1/workflows", headers=bearer))
    assert status == 200 and body["pagination"]["total"] == 1

    status, _, body = invoke(rest_event("POST", f"{RUNS}/cancel", headers={**bearer, "Content-Type": "application/json"},
                                        body=json.dumps({"runIds": [run_id], "reason": "enough"})))
    assert status == 200 and body["results"] == [{"runId": run_id, "status": "cancelled"}]


def test_internal_headers_on_the_public_api_prove_nothing(lambda_env: None):
    spoofed = {**INTERNAL, "X-Forwarded-For": "10.0.0.7", "X-Real-IP": "10.0.0.7", "Forwarded": "for=10.0.0.7"}
    status, _, body = invoke(rest_event("GET", RUNS, headers=spoofed))
    assert status == 401 and body == {"success": False, "error": "Unauthorized", "details": body["details"]}


def test_internal_call_without_a_tenant_is_400(lambda_env: None):
    status, _, body = invoke(rest_event("GET", RUNS, api_id=PRIVATE_API))
    # a validation error's details are a list, even of one line (docs/api.md, "Errors")
    assert status == 400 and body["details"] == ["X-Tenant-Id header is required for internal calls"]


def test_unknown_route_is_a_uniform_404(lambda_env: None):
    status, _, body = invoke(rest_event("GET", "/nope", api_id=PRIVATE_API, headers=INTERNAL))
    assert status == 404 and body["success"] is False and body["error"] == "NotFound"
