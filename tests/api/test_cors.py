"""CORS on the API app: preflights on any route, and the headers on every answer, errors
and 401s included (docs/api.md, "CORS"); through the Lambda handler too."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from workflow_runs.service import RunService
from workflow_runs.settings import Settings, get_settings
from workflow_runs_api import handler as api_handler
from workflow_runs_api.app import create_app

from tests.api.conftest import Api
from tests.api.lambda_events import rest_event
from tests.auth_fixtures import TENANT_CLAIM

RUNS = "/api/v1/workflow-runs"
APP_ORIGIN = "http://localhost:5173"
OTHER_ORIGIN = "https://elsewhere.example"


@pytest.fixture
def cors_api(api: Api) -> Api:
    settings = api.service.settings.model_copy(update={"cors_allow_origins": (APP_ORIGIN,)})
    service = RunService(api.store, api.orchestrator, settings)
    app = create_app(settings=settings, service=service, verifier=api.identity.verifier(settings))
    # raise_server_exceptions off: a 500 is answered as a browser would see it
    return Api(TestClient(app, raise_server_exceptions=False), api.identity, service, api.store, api.orchestrator)


@pytest.mark.parametrize("path", [f"{RUNS}/execute", f"{RUNS}/0b8f6c1e-7d6a-4c55-9a55-5f4b1d2c3e4f",
                                  "/api/v1/workflows/6f1c2d3e-4b5a-4c6d-8e7f-8091a2b3c4d5", "/no/such/route"])
def test_a_preflight_on_any_route_answers_204(cors_api: Api, path: str):
    response = cors_api.client.options(path, headers={
        "Origin": APP_ORIGIN, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization, content-type, if-match"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "if-match" in response.headers["access-control-allow-headers"].lower()


def test_a_listed_origins_list_call_carries_the_headers(cors_api: Api):
    cors_api.put_workflow()
    response = cors_api.client.get(RUNS, headers={**cors_api.headers(), "Origin": APP_ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["vary"] == "Origin"
    assert "Location" in response.headers["access-control-expose-headers"]


def test_a_202_exposes_its_location(cors_api: Api):
    workflow_id = cors_api.put_workflow()
    response = cors_api.client.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}},
                                    headers={**cors_api.headers(), "Origin": APP_ORIGIN})
    assert response.status_code == 202 and response.headers["location"].startswith(RUNS)
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "Location" in [h.strip() for h in response.headers["access-control-expose-headers"].split(",")]


def test_a_401_and_a_500_carry_the_headers_so_the_page_can_read_them(cors_api: Api, monkeypatch):
    unauthorized = cors_api.client.get(RUNS, headers={"Origin": APP_ORIGIN})
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == APP_ORIGIN

    def broken(*args, **kwargs):
        raise RuntimeError("the table is on fire")

    monkeypatch.setattr(cors_api.service, "list_runs", broken)
    failed = cors_api.client.get(RUNS, headers={**cors_api.headers(), "Origin": APP_ORIGIN})
    assert failed.status_code == 500 and failed.json()["error"] == "InternalError"
    assert failed.headers["access-control-allow-origin"] == APP_ORIGIN


def test_an_unlisted_origin_gets_no_allow_origin(cors_api: Api):
    preflight = cors_api.client.options(RUNS, headers={"Origin": OTHER_ORIGIN, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    response = cors_api.client.get(RUNS, headers={**cors_api.headers(), "Origin": OTHER_ORIGIN})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_without_cors_settings_the_api_sends_no_cors_header(api: Api):
    response = api.client.get(RUNS, headers={**api.headers(), "Origin": APP_ORIGIN})
    assert response.status_code == 200
    assert not any(k.startswith("access-control-") for k in response.headers) and "vary" not in response.headers
    preflight = api.client.options(RUNS, headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 405


def test_cors_allow_origins_is_read_from_the_environment_and_checked():
    base = {"RUNS_TABLE": "r", "EVENTS_TABLE": "e"}
    settings = Settings.from_env({**base, "CORS_ALLOW_ORIGINS": "https://a.example.com, http://localhost:5173"})
    assert settings.cors_allow_origins == ("https://a.example.com", "http://localhost:5173")
    assert Settings.from_env({**base, "CORS_ALLOW_ORIGINS": ""}).cors_allow_origins == ()
    for bad in ("*", "https://*.example.com", "https://a.example.com/", "a.example.com", "https://a.example.com/app", "ftp://x"):
        with pytest.raises(ValidationError, match="CORS_ALLOW_ORIGINS"):
            Settings.from_env({**base, "CORS_ALLOW_ORIGINS": bad})


def test_the_lambda_handler_answers_cors_from_the_environment(lambda_env: None, monkeypatch, tokens):
    # Given CORS_ALLOW_ORIGINS in the function's environment, as the stack sets it
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", f"{APP_ORIGIN},https://app.example.com")
    get_settings.cache_clear()
    api_handler._adapter.cache_clear()
    # When a browser preflights, then calls with its token, through API Gateway's proxy event
    preflight = api_handler.handler(rest_event("OPTIONS", f"{RUNS}/execute", headers={
        "Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,idempotency-key"}), None)
    bearer = {"Authorization": f"Bearer {tokens.valid(**{TENANT_CLAIM: 'acme'})}", "Origin": APP_ORIGIN}
    listed = api_handler.handler(rest_event("GET", RUNS, headers=bearer), None)
    unauthorized = api_handler.handler(rest_event("GET", RUNS, headers={"Origin": APP_ORIGIN}), None)
    # Then the preflight is 204 and every answer carries the origin
    assert preflight["statusCode"] == 204
    assert _headers(preflight)["access-control-allow-origin"] == APP_ORIGIN
    assert listed["statusCode"] == 200 and _headers(listed)["access-control-allow-origin"] == APP_ORIGIN
    assert unauthorized["statusCode"] == 401 and _headers(unauthorized)["access-control-allow-origin"] == APP_ORIGIN


def _headers(response: dict) -> dict[str, str]:
    merged = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    merged.update({k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()})
    return merged
