"""The API app (FastAPI). Built by a factory: importing this module starts nothing."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from workflow_runs.service import RunService
from workflow_runs.settings import Settings
from workflow_runs_http.app import new_app

from .routes import runs, workflows


def create_app(
    *,
    settings: Settings | None = None,
    service: RunService | None = None,
    verifier: Any | None = None,
    internal_listener: bool = False,
    dev_jwks: dict | None = None,
    one_request_per_loop: bool = False,
) -> FastAPI:
    """`one_request_per_loop`: the Lambda entry point's app, where one invocation owns the
    event loop (see workflow_runs_http.blocking)."""
    app = new_app(
        title="Workflow Runs API",
        description="Execute workflows, watch each step live, cancel, list and count runs.",
        settings=settings, service=service, verifier=verifier, internal_listener=internal_listener,
    )
    app.state.one_request_per_loop = one_request_per_loop
    app.include_router(runs)
    app.include_router(workflows)
    if dev_jwks is not None:
        @app.get("/.well-known/jwks.json", include_in_schema=False)
        def jwks() -> dict:
            return dev_jwks

    return app
