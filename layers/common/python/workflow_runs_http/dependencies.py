"""Collaborators of the API's routes, injected through FastAPI's Depends (tests override
them); what they resolve to is `collaborators` (shared with the stream app)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from workflow_runs.service import RunService
from workflow_runs.settings import Settings

from .collaborators import default_service as _default_service
from .collaborators import service_of, settings_of


# `async` on purpose: they only read app.state, and a plain `def` dependency costs a worker
# thread hop per request (a new thread per Lambda invocation under Mangum).
async def service(request: Request) -> RunService:
    return service_of(request)


async def settings(request: Request) -> Settings:
    return settings_of(request)


ServiceDep = Annotated[RunService, Depends(service)]
SettingsDep = Annotated[Settings, Depends(settings)]

__all__ = ["ServiceDep", "SettingsDep", "_default_service", "service", "settings"]
