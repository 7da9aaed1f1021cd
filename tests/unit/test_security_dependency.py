"""The FastAPI auth dependency through real transports: TestClient, and Mangum fed genuine
API Gateway REST proxy events. Tokens are verified against a JWKS served on loopback."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mangum import Mangum
from workflow_runs.auth import JwtVerifier
from workflow_runs_http.errors import install_error_handlers
from workflow_runs_http.security import PrincipalDep

from tests.auth_fixtures import (
    ATTACKS,
    TENANT_CLAIM,
    FakeClock,
    JwksServer,
    SigningKey,
    Tokens,
    auth_settings,
)

PRIVATE_API_ID = "priv123abc"
PUBLIC_API_ID = "pub456def"

SPOOFED_INTERNAL_HEADERS: dict[str, dict[str, str]] = {
    "x_forwarded_for": {"X-Forwarded-For": "10.0.0.1"},
    "x_real_ip": {"X-Real-IP": "127.0.0.1"},
    "forwarded": {"Forwarded": "for=10.0.0.1;proto=https"},
    "x_tenant_id": {"X-Tenant-Id": "acme"},
    "lwa_context_not_behind_lwa": {"x-amzn-request-context": json.dumps({"apiId": PRIVATE_API_ID})},
    "all_together": {
        "X-Forwarded-For": "10.0.0.1",
        "X-Real-IP": "10.0.0.1",
        "Forwarded": "for=10.0.0.1",
        "X-Tenant-Id": "acme",
        "x-amzn-request-context": json.dumps({"apiId": PRIVATE_API_ID}),
    },
}


def make_app(verifier: JwtVerifier | None, **state: Any) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.settings = auth_settings("http://127.0.0.1:9/unused", private_api_ids=(PRIVATE_API_ID,))
    if verifier is not None:
        app.state.verifier = verifier
    for name, value in state.items():
        setattr(app.state, name, value)

    @app.get("/whoami")
    async def whoami(principal: PrincipalDep) -> dict[str, Any]:
        return asdict(principal)

    return app


def assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401
    body = response.json()
    assert body["success"] is False and body["error"] == "Unauthorized"
    assert isinstance(body["details"], str) and body["details"]
    assert response.headers["www-authenticate"] == "Bearer"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- public path: a verified JWT or nothing -----------------------------------------------


def test_valid_jwt_yields_its_tenant(verifier: JwtVerifier, tokens: Tokens) -> None:
    response = TestClient(make_app(verifier)).get("/whoami", headers=bearer(tokens.valid()))
    assert response.status_code == 200
    assert response.json() == {"subject": "user-1", "tenant": "acme", "internal": False}


def test_x_tenant_id_cannot_override_the_jwt_tenant(verifier: JwtVerifier, tokens: Tokens) -> None:
    headers = {**bearer(tokens.valid()), "X-Tenant-Id": "globex"}
    assert TestClient(make_app(verifier)).get("/whoami", headers=headers).json()["tenant"] == "acme"


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_401_with_uniform_body(attack: str, verifier: JwtVerifier, tokens: Tokens) -> None:
    build, reason = ATTACKS[attack]
    response = TestClient(make_app(verifier)).get("/whoami", headers=bearer(build(tokens)))
    assert_unauthorized(response)
    assert reason in response.json()["details"]


def test_no_credential_is_401(verifier: JwtVerifier) -> None:
    assert_unauthorized(TestClient(make_app(verifier)).get("/whoami"))


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc", "bearer"])
def test_non_bearer_or_empty_authorization_is_401(authorization: str, verifier: JwtVerifier) -> None:
    assert_unauthorized(TestClient(make_app(verifier)).get("/whoami", headers={"Authorization": authorization}))


def test_two_authorization_headers_are_401(verifier: JwtVerifier, tokens: Tokens) -> None:
    headers = [("Authorization", f"Bearer {tokens.valid()}"), ("Authorization", "Bearer other")]
    assert_unauthorized(TestClient(make_app(verifier)).get("/whoami", headers=headers))


@pytest.mark.parametrize("spoof", sorted(SPOOFED_INTERNAL_HEADERS))
def test_spoofed_internal_headers_prove_nothing(spoof: str, verifier: JwtVerifier) -> None:
    response = TestClient(make_app(verifier)).get("/whoami", headers=SPOOFED_INTERNAL_HEADERS[spoof])
    assert_unauthorized(response)


def test_spoofed_headers_from_loopback_client_prove_nothing(verifier: JwtVerifier) -> None:
    # Even a socket peer of 127.0.0.1 is not evidence: on one machine that is everyone.
    client = TestClient(make_app(verifier), client=("127.0.0.1", 50000))
    assert_unauthorized(client.get("/whoami", headers=SPOOFED_INTERNAL_HEADERS["all_together"]))


def test_key_rotated_in_while_app_runs_is_accepted(
    verifier: JwtVerifier, jwks_server: JwksServer, signing_key: SigningKey, clock: FakeClock
) -> None:
    client = TestClient(make_app(verifier))
    assert client.get("/whoami", headers=bearer(Tokens(signing_key).valid())).status_code == 200
    rotated = SigningKey.rsa("rotated-http")
    jwks_server.publish(signing_key, rotated)
    clock.advance(60)
    response = client.get("/whoami", headers=bearer(Tokens(rotated).valid(**{TENANT_CLAIM: "globex"})))
    assert response.status_code == 200 and response.json()["tenant"] == "globex"


# --- one machine: the internal listener ----------------------------------------------------


def test_internal_listener_call_acts_for_x_tenant_id() -> None:
    client = TestClient(make_app(None, internal_listener=True))
    response = client.get("/whoami", headers={"X-Tenant-Id": "acme"})
    assert response.status_code == 200
    assert response.json() == {"subject": "internal", "tenant": "acme", "internal": True}


@pytest.mark.parametrize("headers", [{}, {"X-Tenant-Id": ""}, {"X-Tenant-Id": "acme#WF#1"}, {"X-Tenant-Id": "x" * 129}])
def test_internal_call_without_valid_x_tenant_id_is_400(headers: dict[str, str]) -> None:
    response = TestClient(make_app(None, internal_listener=True)).get("/whoami", headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False and body["error"] == "ValidationError"
    assert any("X-Tenant-Id" in line for line in body["details"])  # a list, even of one line


def test_internal_listener_flag_must_be_exactly_true(verifier: JwtVerifier) -> None:
    client = TestClient(make_app(verifier, internal_listener="yes"))
    assert_unauthorized(client.get("/whoami", headers={"X-Tenant-Id": "acme"}))


def test_bearer_on_internal_listener_decides_the_principal(verifier: JwtVerifier, tokens: Tokens) -> None:
    client = TestClient(make_app(verifier, internal_listener=True))
    forwarded_user = client.get("/whoami", headers={**bearer(tokens.valid()), "X-Tenant-Id": "globex"})
    assert forwarded_user.json() == {"subject": "user-1", "tenant": "acme", "internal": False}
    assert_unauthorized(client.get("/whoami", headers={**bearer("garbage"), "X-Tenant-Id": "globex"}))


# --- AWS, API function: Mangum and the API Gateway request context --------------------------


def rest_proxy_event(api_id: str, headers: dict[str, str]) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as the platform delivers it to the API function."""
    return {
        "resource": "/{proxy+}",
        "path": "/whoami",
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": "whoami"},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": "/{proxy+}",
            "httpMethod": "GET",
            "extendedRequestId": "Zx1=",
            "requestTime": "28/Nov/2026:12:00:00 +0000",
            "path": "/prod/whoami",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "prod",
            "domainPrefix": api_id,
            "requestTimeEpoch": 1796126400000,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "10.0.3.7", "vpceId": "vpce-0abc", "userAgent": "test"},
            "domainName": f"{api_id}.execute-api.eu-west-1.amazonaws.com",
            "apiId": api_id,
        },
        "body": None,
        "isBase64Encoded": False,
    }


class LambdaContext:
    function_name = "api"
    aws_request_id = "req-1"


def invoke(app: FastAPI, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = Mangum(app, lifespan="off")(event, LambdaContext())
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return response["statusCode"], json.loads(body)


def test_request_through_private_api_is_internal() -> None:
    status, body = invoke(make_app(None), rest_proxy_event(PRIVATE_API_ID, {"X-Tenant-Id": "acme"}))
    assert status == 200
    assert body == {"subject": "internal", "tenant": "acme", "internal": True}


def test_request_through_private_api_without_x_tenant_id_is_400() -> None:
    status, body = invoke(make_app(None), rest_proxy_event(PRIVATE_API_ID, {}))
    assert status == 400 and body["error"] == "ValidationError"


def test_request_through_public_api_with_spoofed_headers_is_401(verifier: JwtVerifier) -> None:
    headers = {**SPOOFED_INTERNAL_HEADERS["all_together"]}
    status, body = invoke(make_app(verifier), rest_proxy_event(PUBLIC_API_ID, headers))
    assert status == 401
    assert body["success"] is False and body["error"] == "Unauthorized"


def test_request_through_public_api_with_jwt_is_its_tenant(verifier: JwtVerifier, tokens: Tokens) -> None:
    status, body = invoke(make_app(verifier), rest_proxy_event(PUBLIC_API_ID, bearer(tokens.valid())))
    assert status == 200 and body == {"subject": "user-1", "tenant": "acme", "internal": False}


def test_private_api_id_in_a_header_under_mangum_proves_nothing(verifier: JwtVerifier) -> None:
    # Under Mangum only the event's requestContext counts, never an LWA-style header.
    headers = {"x-amzn-request-context": json.dumps({"apiId": PRIVATE_API_ID}), "X-Tenant-Id": "acme"}
    app = make_app(verifier, behind_lambda_web_adapter=True)
    status, _ = invoke(app, rest_proxy_event(PUBLIC_API_ID, headers))
    assert status == 401


def test_no_private_api_configured_means_nothing_is_internal(verifier: JwtVerifier) -> None:
    app = make_app(verifier)
    app.state.settings = app.state.settings.model_copy(update={"private_api_ids": ()})
    status, _ = invoke(app, rest_proxy_event(PRIVATE_API_ID, {"X-Tenant-Id": "acme"}))
    assert status == 401


# --- AWS, stream function: Lambda Web Adapter's x-amzn-request-context ----------------------


def lwa_context(api_id: str) -> str:
    return json.dumps({"accountId": "123456789012", "apiId": api_id, "stage": "prod", "identity": {}})


def test_lwa_context_of_private_api_is_internal() -> None:
    client = TestClient(make_app(None, behind_lambda_web_adapter=True))
    response = client.get(
        "/whoami", headers={"x-amzn-request-context": lwa_context(PRIVATE_API_ID), "X-Tenant-Id": "acme"}
    )
    assert response.status_code == 200 and response.json()["internal"] is True


@pytest.mark.parametrize(
    "values",
    [
        [lwa_context(PUBLIC_API_ID)],
        ["not json"],
        [json.dumps(["apiId", PRIVATE_API_ID])],
        # An adapter older than 0.7.2 appended its header after the caller's forged one.
        [lwa_context(PRIVATE_API_ID), lwa_context(PUBLIC_API_ID)],
    ],
    ids=["public_api", "not_json", "not_an_object", "duplicated"],
)
def test_lwa_context_that_is_not_a_single_private_api_context_is_401(values: list[str], verifier: JwtVerifier) -> None:
    client = TestClient(make_app(verifier, behind_lambda_web_adapter=True))
    headers = [("x-amzn-request-context", value) for value in values] + [("X-Tenant-Id", "acme")]
    assert_unauthorized(client.get("/whoami", headers=headers))


def test_lwa_context_header_is_ignored_when_lwa_is_not_in_front(verifier: JwtVerifier) -> None:
    client = TestClient(make_app(verifier, behind_lambda_web_adapter=False))
    headers = {"x-amzn-request-context": lwa_context(PRIVATE_API_ID), "X-Tenant-Id": "acme"}
    assert_unauthorized(client.get("/whoami", headers=headers))
