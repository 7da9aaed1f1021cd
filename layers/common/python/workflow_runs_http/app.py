"""What every HTTP app of ours starts from: injected collaborators on `app.state`, the
uniform error body, the body limit and the readiness route."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from workflow_runs.service import RunService
from workflow_runs.settings import Settings, get_settings

from .cors import CorsMiddleware
from .deadlines import ArrivalClock
from .errors import install_error_handlers
from .limits import BodyLimitMiddleware


class EdgeApp(FastAPI):
    """FastAPI with CORS and the arrival clock outside everything else, so even the 500s
    that Starlette's outermost error layer writes carry CORS headers, and arrival is noted
    before any other work."""

    def build_middleware_stack(self) -> Any:
        settings = self.state.settings
        origins = settings.cors_allow_origins if settings is not None else ()
        return CorsMiddleware(ArrivalClock(super().build_middleware_stack()), allow_origins=origins)


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
    marks the dev server's internal port (the private API's stand-in). CORS follows
    `settings.cors_allow_origins` (none without settings)."""
    app = EdgeApp(title=title, version="1.0.0", description=description,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings = settings
    app.state.service = service
    app.state.verifier = verifier
    app.state.internal_listener = internal_listener
    install_error_handlers(app)
    # Without injected settings (Lambda builds them on first use), the limit is read from the
    # same settings then: one default, one parser (workflow_runs.settings).
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes if settings else
                       lambda: get_settings().max_body_bytes)

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok"}

    return app
