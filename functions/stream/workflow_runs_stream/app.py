"""The SSE app (FastAPI): execute/stream and a run's resumable event stream.

Locally it runs under uvicorn; in AWS under the Lambda Web Adapter in response-stream mode
(`run.sh`, readiness on `/health`). Built by a factory: importing this module starts nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from workflow_runs.service import RunService
from workflow_runs.settings import Settings
from workflow_runs_http.app import new_app

from .routes import runs


def create_app(
    *,
    settings: Settings | None = None,
    service: RunService | None = None,
    verifier: Any | None = None,
    internal_listener: bool = False,
) -> FastAPI:
    app = new_app(
        title="Workflow Runs API (live)",
        description="Execute a workflow and watch it live over Server-Sent Events; resume a broken stream.",
        settings=settings, service=service, verifier=verifier, internal_listener=internal_listener,
    )
    # Streams being served right now (observability; tests check none outlives its client).
    app.state.open_streams = 0
    app.include_router(runs)
    return app
