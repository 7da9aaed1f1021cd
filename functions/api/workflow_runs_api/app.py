"""The API app (FastAPI). Built by a factory: importing this module starts nothing."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from workflow_runs.service import RunService
from workflow_runs.settings import Settings
from workflow_runs_http.errors import install_error_handlers
from workflow_runs_http.limits import BodyLimitMiddleware

from .routes import runs, workflows

DEFAULT_MAX_BODY_BYTES = 256 * 1024


def create_app(
    *,
    settings: Settings | None = None,
    service: RunService | None = None,
    verifier: Any | None = None,
    internal_listener: bool = False,
    dev_jwks: dict | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Workflow Runs API",
        version="1.0.0",
        description="Execute workflows, watch each step live, cancel, list and count runs.",
    )
    app.state.settings = settings
    app.state.service = service
    app.state.verifier = verifier
    app.state.internal_listener = internal_listener
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes if settings else DEFAULT_MAX_BODY_BYTES)
    app.include_router(runs)
    app.include_router(workflows)

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok"}

    if dev_jwks is not None:
        @app.get("/.well-known/jwks.json", include_in_schema=False)
        def jwks() -> dict:
            return dev_jwks

    return app
