"""Collaborators of the routes, injected through FastAPI's Depends (tests override them)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request

from workflow_runs.service import RunService
from workflow_runs.settings import Settings, get_settings


@lru_cache(maxsize=1)
def _default_service() -> RunService:
    from workflow_runs.orchestrator import StepFunctionsOrchestrator  # noqa: PLC0415
    from workflow_runs.store import RunStore  # noqa: PLC0415

    settings = get_settings()
    if not settings.state_machine_arn:
        raise RuntimeError("missing required setting: STATE_MACHINE_ARN")
    if settings.orchestration != "standard" and not settings.express_state_machine_arn:
        raise RuntimeError("missing required setting: EXPRESS_STATE_MACHINE_ARN (or ORCHESTRATION=standard)")
    orchestrator = StepFunctionsOrchestrator(settings.state_machine_arn, settings.express_state_machine_arn)
    return RunService(RunStore(settings), orchestrator, settings)


# `async` on purpose: they only read app.state, and a plain `def` dependency costs a worker
# thread hop per request (a new thread per Lambda invocation under Mangum).
async def service(request: Request) -> RunService:
    injected = getattr(request.app.state, "service", None)
    return injected if injected is not None else _default_service()


async def settings(request: Request) -> Settings:
    injected = getattr(request.app.state, "settings", None)
    return injected if injected is not None else get_settings()


ServiceDep = Annotated[RunService, Depends(service)]
SettingsDep = Annotated[Settings, Depends(settings)]
