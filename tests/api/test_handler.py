"""Each route once through the Lambda handler (Mangum) with real API Gateway REST proxy
events, on moto's DynamoDB and Step Functions, configured from the environment as in AWS."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from workflow_runs.settings import get_settings
from workflow_runs.store import dynamodb_client
from workflow_runs_api import handler as api_handler
from workflow_runs_dev.dynamodb_local import create_tables
from workflow_runs_http import dependencies

from tests.api.conftest import WORKFLOW
from tests.auth_fixtures import AUDIENCE, ISSUER, TENANT_CLAIM, jwks_server, signing_key, tokens  # noqa: F401
from tests.support import LOCAL_KEY

PRIVATE_API = "privapi123"
PUBLIC_API = "pubapi456"
RUNS = "/api/v1/workflow-runs"


def rest_event(method: str, path: str, *, api_id: str = PUBLIC_API, headers: dict[str, str] | None = None,
               query: dict[str, str] | None = None, body: bytes | str | None = None, base64_body: bool = False) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event as the `{proxy+}` integration delivers it."""
    headers = {"Host": "api.example.test", "X-Forwarded-Proto": "https", **(headers or {})}
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode() if base64_body else body.decode()
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}", "httpMethod": method, "path": f"/prod{path}", "stage": "prod",
            "apiId": api_id, "requestId": str(uuid.uuid4()), "accountId": "123456789012",
            "identity": {"sourceIp": "203.0.113.9", "vpceId": "vpce-0abc" if api_id == PRIVATE_API else None},
        },
        "body": body,
        "isBase64Encoded": base64_body,
    }


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "----wfruns" + uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, jwks_server, signing_key) -> Iterator[None]:  # noqa: F811
    jwks_server.publish(signing_key)
    with mock_aws():
        machine = boto3.client("stepfunctions").create_state_machine(
            name="runs", roleArn="arn:aws:iam::123456789012:role/sfn",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        )["stateMachineArn"]
        express = boto3.client("stepfunctions").create_state_machine(
            name="runs-express", roleArn="arn:aws:iam::123456789012:role/sfn", type="EXPRESS",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        )["stateMachineArn"]
        env = {"RUNS_TABLE": "runs-table", "EVENTS_TABLE": "events-table", "STATE_MACHINE_ARN": machine,
               "EXPRESS_STATE_MACHINE_ARN": express,
               "PRIVATE_API_IDS": PRIVATE_API, "JWKS_URL": jwks_server.url, "JWT_ISSUER": ISSUER,
               "JWT_AUDIENCE": AUDIENCE, "JWT_TENANT_CLAIM": TENANT_CLAIM, "LOCAL_SECRET_KEY": LOCAL_KEY,
               "EXECUTE_WAIT_SECONDS": "0"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for cached in (get_settings, dynamodb_client, api_handler._adapter, dependencies._default_service):
            cached.cache_clear()
        create_tables(boto3.client("dynamodb"), "runs-table", "events-table")
        yield
        for cached in (get_settings, dynamodb_client, api_handler._adapter, dependencies._default_service):
            cached.cache_clear()


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = api_handler.handler(event, None)
    body = base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"]
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return response["statusCode"], headers, json.loads(body) if body else None


INTERNAL = {"X-Tenant-Id": "acme"}


def test_every_route_through_the_lambda_handler(lambda_env: None, tokens):  # noqa: F811
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
    assert status == 400 and "X-Tenant-Id" in body["details"]


def test_unknown_route_is_a_uniform_404(lambda_env: None):
    status, _, body = invoke(rest_event("GET", "/nope", api_id=PRIVATE_API, headers=INTERNAL))
    assert status == 404 and body["success"] is False and body["error"] == "NotFound"
