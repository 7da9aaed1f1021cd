"""What every HTTP app of ours starts from: injected collaborators on `app.state`, the
uniform error body, the body limit and the readiness route."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from workflow_runs.service import RunService
from workflow_runs.settings import Settings

from .errors import install_error_handlers
from .limits import BodyLimitMiddleware

DEFAULT_MAX_BODY_BYTES = 256 * 1024


def new_app(
    *,
    title: str,
    description: str,
    settings: Settings | None = None,
    service: RunService | None = None,
    verifier: Any | None = None,
    internal_listener: bool = False,
) -> FastAPI:
    """`settings`, `service` and `verifier` are injected by the dev server and tests; in
    Lambda they are None and built from the environment on first use. `internal_listener`
    marks the dev server's internal port (the private API's stand-in)."""
    app = FastAPI(title=title, version="1.0.0", description=description,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings = settings
    app.state.service = service
    app.state.verifier = verifier
    app.state.internal_listener = internal_listener
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes if settings else DEFAULT_MAX_BODY_BYTES)

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok"}

    return app
