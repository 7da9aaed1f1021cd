"""API Gateway REST proxy events as the `{proxy+}` integration delivers them, and the API
function's Lambda handler invoked with one (the handler tests and their neighbours share them)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from workflow_runs_api import handler as api_handler

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


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = api_handler.handler(event, None)
    body = base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"]
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return response["statusCode"], headers, json.loads(body) if body else None


INTERNAL = {"X-Tenant-Id": "acme"}
