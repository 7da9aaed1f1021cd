"""Async routes never block the dev server's event loop with a store call, and the Lambda
handler starts no thread per invocation."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from workflow_runs.errors import NotFound
from workflow_runs.service import RunService
from workflow_runs_api.app import create_app

from bench.request_overhead import PRIVATE_API_ID, RUN_ID, TENANT, Context, NoOrchestrator, rest_event, sample_run
from tests.support import make_settings

SLOW_SECONDS = 0.4


class SlowStore:
    """A store whose read takes SLOW_SECONDS of blocking I/O, as a throttled DynamoDB might."""

    def __init__(self) -> None:
        self.run = sample_run()

    def get_run(self, tenant: str, run_id: str) -> Any:
        time.sleep(SLOW_SECONDS)
        if (tenant, run_id) != (TENANT, RUN_ID):
            raise NotFound(f"workflow run {run_id} not found")
        return self.run


def test_slow_store_reads_under_load_leave_the_dev_server_loop_free():
    settings = make_settings(None)
    app = create_app(settings=settings, service=RunService(SlowStore(), NoOrchestrator(), settings),  # type: ignore[arg-type]
                     internal_listener=True)
    headers = {"X-Tenant-Id": TENANT}

    async def scenario() -> tuple[list[int], float, list[float]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dev") as client:
            started = time.perf_counter()
            reads = [asyncio.create_task(client.get(f"/api/v1/workflow-runs/{RUN_ID}", headers=headers))
                     for _ in range(12)]
            await asyncio.sleep(0.05)  # every read is in its store call now
            pings = []
            for _ in range(5):
                ping_started = time.perf_counter()
                assert (await client.get("/health")).status_code == 200
                pings.append(time.perf_counter() - ping_started)
            replies = await asyncio.gather(*reads)
            return [r.status_code for r in replies], time.perf_counter() - started, pings

    statuses, elapsed, pings = asyncio.run(scenario())

    assert statuses == [200] * 12
    # The loop answered while twelve reads were blocked in the store: none waited for one.
    assert max(pings) < SLOW_SECONDS / 2, pings
    # And the reads ran side by side on worker threads, not one after another (12 × 0.4 s).
    assert elapsed < SLOW_SECONDS * 4, elapsed


def test_the_lambda_handler_starts_no_thread_per_invocation(monkeypatch: pytest.MonkeyPatch):
    from workflow_runs.settings import get_settings
    from workflow_runs_api import handler as api_handler

    monkeypatch.setenv("RUNS_TABLE", "runs")
    monkeypatch.setenv("EVENTS_TABLE", "events")
    monkeypatch.setenv("PRIVATE_API_IDS", PRIVATE_API_ID)
    for name, value in {"JWT_ISSUER": "https://issuer.invalid/", "JWT_AUDIENCE": "runs",
                        "JWKS_URL": "https://issuer.invalid/jwks.json"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    api_handler._adapter.cache_clear()
    try:
        settings = get_settings()
        store = SlowStore()
        monkeypatch.setattr("tests.api.test_blocking_calls.SLOW_SECONDS", 0.0)
        api_handler._adapter().app.state.service = RunService(store, NoOrchestrator(), settings)  # type: ignore[arg-type]
        started: list[threading.Thread] = []
        original = threading.Thread.start

        def counting(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
            started.append(self)
            original(self, *args, **kwargs)

        monkeypatch.setattr(threading.Thread, "start", counting)
        replies = [api_handler.handler(rest_event(), Context()) for _ in range(20)]
        # A bearer token's verification takes the same path: no thread either (a bad token is refused).
        bearer = rest_event()
        bearer["requestContext"]["apiId"] = "public" + uuid.uuid4().hex[:6]
        bearer["headers"]["Authorization"] = "Bearer not-a-jwt"
        bearer["multiValueHeaders"]["Authorization"] = ["Bearer not-a-jwt"]
        refused = api_handler.handler(bearer, Context())
    finally:
        get_settings.cache_clear()
        api_handler._adapter.cache_clear()

    assert [r["statusCode"] for r in replies] == [200] * 20
    assert refused["statusCode"] == 401
    assert started == []
