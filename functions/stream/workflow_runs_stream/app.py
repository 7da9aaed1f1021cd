"""The SSE app (FastAPI): execute/stream and a run's resumable event stream.

Locally it runs under uvicorn; in AWS under the Lambda Web Adapter in response-stream mode
(`run.sh`, readiness on `/health`). Built by a factory: importing this module starts nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from workflow_runs.service import RunService
from workflow_runs.settings import Settings
from workflow_runs_http.errors import install_error_handlers
from workflow_runs_http.limits import BodyLimitMiddleware

from .routes import runs

DEFAULT_MAX_BODY_BYTES = 256 * 1024


def create_app(
    *,
    settings: Settings | None = None,
    service: RunService | None = None,
    verifier: Any | None = None,
    internal_listener: bool = False,
) -> FastAPI:
    app = FastAPI(
        title="Workflow Runs API (live)",
        version="1.0.0",
        description="Execute a workflow and watch it live over Server-Sent Events; resume a broken stream.",
    )
    app.state.settings = settings
    app.state.service = service
    app.state.verifier = verifier
    app.state.internal_listener = internal_listener
    # Streams being served right now (observability; tests check none outlives its client).
    app.state.open_streams = 0
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes if settings else DEFAULT_MAX_BODY_BYTES)
    app.include_router(runs)

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok"}

    return app
