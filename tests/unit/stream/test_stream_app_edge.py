"""The stream app as Lambda builds it (no settings yet): CORS from CORS_ALLOW_ORIGINS, and
the run viewer mounted at /viewer/ — what the public API routes to the stream function."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from workflow_runs_stream.app import create_app

ORIGIN = "https://app.example.com"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", f"{ORIGIN}, https://other.example.com")
    return TestClient(create_app())


def test_a_preflight_from_a_listed_origin_is_answered_without_settings(client: TestClient) -> None:
    reply = client.options("/api/v1/workflow-runs/execute/stream", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert reply.status_code == 204
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert "Last-Event-ID" in reply.headers["access-control-allow-headers"]


def test_an_origin_not_listed_gets_no_allow_origin(client: TestClient) -> None:
    reply = client.get("/health", headers={"Origin": "https://evil.example.com"})
    assert reply.status_code == 200
    assert "access-control-allow-origin" not in reply.headers
    assert reply.headers["vary"] == "Origin"


def test_responses_to_a_listed_origin_carry_cors(client: TestClient) -> None:
    reply = client.get("/health", headers={"Origin": ORIGIN})
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert "Location" in reply.headers["access-control-expose-headers"]


def test_no_origins_no_cors_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORS_ALLOW_ORIGINS", raising=False)
    reply = TestClient(create_app()).get("/health", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in reply.headers and "vary" not in reply.headers


def test_the_viewer_is_served_by_the_stream_app(client: TestClient) -> None:
    reply = client.get("/viewer/")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in reply.headers["content-security-policy"]
