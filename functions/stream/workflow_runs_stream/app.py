"""The SSE app (Starlette + sse-starlette, no FastAPI): execute/stream and a run's resumable
event stream, and `/health`.

Locally it runs under uvicorn; in AWS under the Lambda Web Adapter in response-stream mode
(`run.sh`, readiness on `/health`). Built by a factory: importing this module starts nothing,
and neither module nor factory loads pydantic, the service or boto3 (the first request does),
so a cold start pays only Starlette's import (bench/cold_start.py, `cold_init_stream`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from workflow_runs_http.cors import CorsMiddleware
from workflow_runs_http.errors import exception_handlers
from workflow_runs_http.limits import BodyLimitMiddleware

from .routes import stream_routes
from .viewer import viewer_app

if TYPE_CHECKING:
    from workflow_runs.service import RunService
    from workflow_runs.settings import Settings

    from .telemetry import StreamTelemetry

def create_app(
    *,
    settings: Settings | None = None,
    service: RunService | None = None,
    verifier: Any | None = None,
    internal_listener: bool = False,
    telemetry: StreamTelemetry | None = None,
) -> Starlette:
    """`settings`, `service`, `verifier` and `telemetry` are injected by the dev server and
    tests; in Lambda they are None and built from the environment on first use.
    `internal_listener` marks the dev server's internal port (the private API's stand-in)."""
    routes: list[BaseRoute] = [
        *stream_routes(),
        Route("/health", health, methods=["GET"]),
        Mount("/viewer", app=viewer_app()),
    ]
    # Outermost first: CORS, then the body limit, both from the settings — in Lambda read on
    # the first request (the adapter's readiness check on /health, so a bad setting still
    # fails the start), keeping pydantic out of the import.
    def settings_now() -> Settings:
        if settings is not None:
            return settings
        from workflow_runs.settings import get_settings

        return get_settings()

    middleware = [
        Middleware(CorsMiddleware, allow_origins=lambda: settings_now().cors_allow_origins),
        Middleware(BodyLimitMiddleware, max_bytes=lambda: settings_now().max_body_bytes),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=exception_handlers())
    app.state.settings = settings
    app.state.service = service
    app.state.verifier = verifier
    app.state.internal_listener = internal_listener
    app.state.telemetry = telemetry
    # Streams being served right now (observability; tests check none outlives its client).
    app.state.open_streams = 0
    return app


async def health(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})
