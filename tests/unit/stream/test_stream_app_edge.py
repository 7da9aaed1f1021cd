"""The stream app as Lambda builds it (no settings yet): CORS and the body limit from the
settings, read on the first request (CORS_ALLOW_ORIGINS, MAX_BODY_BYTES), and the run viewer
mounted at /viewer/ — what the public API routes to the stream function."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from workflow_runs.settings import get_settings
from workflow_runs_stream.app import create_app

ORIGIN = "https://app.example.com"


@pytest.fixture(autouse=True)
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The stream function's environment as the stack sets it; its settings read afresh."""
    monkeypatch.setenv("RUNS_TABLE", "runs")
    monkeypatch.setenv("EVENTS_TABLE", "events")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", f"{ORIGIN}, https://other.example.com")
    return TestClient(create_app())


def test_the_body_limit_is_the_settings_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "100")
    reply = TestClient(create_app()).post("/api/v1/workflow-runs/execute/stream", content=b"x" * 101,
                                          headers={"Content-Type": "application/json"})
    assert reply.status_code == 413
    assert "over 100 bytes" in reply.json()["details"]


def test_a_star_origin_in_the_environment_fails_the_readiness_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # The settings' validator is the one reader: the first request (the Lambda Web Adapter's
    # readiness check on /health) fails, so the function never starts serving.
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "*")
    with pytest.raises(ValueError, match=r"CORS_ALLOW_ORIGINS: '\*' is refused"):
        TestClient(create_app()).get("/health")


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
