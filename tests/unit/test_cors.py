"""The CORS middleware on its own, around plain ASGI apps (docs/api.md, "CORS")."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest
from workflow_runs_http.cors import ALLOW_HEADERS, CorsMiddleware

APP_ORIGIN = "https://app.example.com"
OTHER_ORIGIN = "https://evil.example.net"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}


class Recorder:
    """An app that answers `status` with `chunks` as a streamed body, and counts its calls."""

    def __init__(self, status: int = 200, chunks: tuple[bytes, ...] = (b"ok",), headers: list | None = None):
        self.status, self.chunks, self.headers, self.calls = status, chunks, headers or [], 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"content-type", b"text/plain"), *self.headers]})
        for i, chunk in enumerate(self.chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(self.chunks) - 1})


async def call(app: Any, method: str = "GET", headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
        return await client.request(method, "/api/v1/workflow-runs/execute", headers=headers)


@pytest.mark.anyio
async def test_a_preflight_from_a_listed_origin_answers_204_without_reaching_the_app():
    inner = Recorder()
    response = await call(CorsMiddleware(inner, allow_origins=(APP_ORIGIN,)), "OPTIONS",
                          {"Origin": APP_ORIGIN, **PREFLIGHT})
    assert response.status_code == 204 and inner.calls == 0
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert {"GET", "POST", "PUT", "OPTIONS"} <= {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "last-event-id", "if-match"} <= allowed
    assert int(response.headers["access-control-max-age"]) > 0
    assert response.headers["vary"] == "Origin"


@pytest.mark.anyio
async def test_a_preflight_from_an_unlisted_origin_is_refused_with_no_cors_header():
    inner = Recorder()
    response = await call(CorsMiddleware(inner, allow_origins=(APP_ORIGIN,)), "OPTIONS",
                          {"Origin": OTHER_ORIGIN, **PREFLIGHT})
    assert response.status_code == 403 and inner.calls == 0
    assert response.json()["error"] == "Forbidden"
    assert not any(k.startswith("access-control-") for k in response.headers)


@pytest.mark.anyio
@pytest.mark.parametrize("status", [200, 202, 401, 404, 500])
async def test_every_response_to_a_listed_origin_carries_the_cors_headers(status: int):
    response = await call(CorsMiddleware(Recorder(status), allow_origins=(APP_ORIGIN, "http://localhost:5173")),
                          "POST", {"Origin": APP_ORIGIN})
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["vary"] == "Origin"
    assert [h.strip() for h in response.headers["access-control-expose-headers"].split(",")] == [
        "Location", "ETag", "Retry-After"]


@pytest.mark.anyio
async def test_a_streamed_response_keeps_its_body_and_gets_the_headers_once():
    chunks = (b"retry: 3000\n\n", b"event: a\ndata: {}\n\n", b"event: result\ndata: {}\n\n")
    response = await call(CorsMiddleware(Recorder(200, chunks), allow_origins=(APP_ORIGIN,)), "POST",
                          {"Origin": APP_ORIGIN})
    assert response.content == b"".join(chunks)
    assert response.headers.get_list("access-control-allow-origin") == [APP_ORIGIN]


@pytest.mark.anyio
async def test_an_unlisted_origin_gets_no_allow_origin_but_the_app_still_answers():
    inner = Recorder()
    response = await call(CorsMiddleware(inner, allow_origins=(APP_ORIGIN,)), "GET", {"Origin": OTHER_ORIGIN})
    assert response.status_code == 200 and inner.calls == 1
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-expose-headers" not in response.headers
    assert response.headers["vary"] == "Origin"


@pytest.mark.anyio
async def test_without_origins_no_cors_header_at_all_and_options_reaches_the_app():
    inner = Recorder(405)
    response = await call(CorsMiddleware(inner, allow_origins=()), "OPTIONS", {"Origin": APP_ORIGIN, **PREFLIGHT})
    assert response.status_code == 405 and inner.calls == 1
    assert not any(k.startswith("access-control-") or k == "vary" for k in response.headers)


@pytest.mark.anyio
async def test_the_apps_own_vary_is_kept_beside_origin():
    inner = Recorder(headers=[(b"vary", b"Accept-Encoding")])
    response = await call(CorsMiddleware(inner, allow_origins=(APP_ORIGIN,)), "GET", {"Origin": APP_ORIGIN})
    assert response.headers.get_list("vary") == ["Accept-Encoding, Origin"]


@pytest.mark.anyio
async def test_nested_middlewares_answer_once_with_the_outer_ones_origins():
    inner = Recorder()
    app = CorsMiddleware(CorsMiddleware(inner, allow_origins=(OTHER_ORIGIN,)), allow_origins=(APP_ORIGIN,))
    response = await call(app, "GET", {"Origin": APP_ORIGIN})
    assert response.headers.get_list("access-control-allow-origin") == [APP_ORIGIN]
    assert response.headers.get_list("vary") == ["Origin"]
    preflight = await call(app, "OPTIONS", {"Origin": OTHER_ORIGIN, **PREFLIGHT})
    assert preflight.status_code == 403


@pytest.mark.anyio
async def test_a_plain_options_request_without_a_requested_method_is_no_preflight():
    inner = Recorder(204)
    response = await call(CorsMiddleware(inner, allow_origins=(APP_ORIGIN,)), "OPTIONS", {"Origin": APP_ORIGIN})
    assert inner.calls == 1 and response.headers["access-control-allow-origin"] == APP_ORIGIN


def test_allowed_headers_name_what_the_api_reads():
    assert {"Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "If-Match"} <= {
        h.strip() for h in ALLOW_HEADERS.split(",")}


def test_the_module_imports_no_web_framework():
    code = ("import sys, workflow_runs_http.cors, workflow_runs_http.deadlines; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'pydantic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_star_is_refused_not_read_as_every_origin():
    with pytest.raises(ValueError, match=r"'\*' is refused"):
        CorsMiddleware(Recorder(), allow_origins=("https://app.example.com", "*"))
