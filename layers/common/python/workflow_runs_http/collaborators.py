"""The collaborators of a request, framework-free: what the dev server and the tests injected
on `app.state`, or (in Lambda) what the environment builds on first use."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection
from workflow_runs.states import STANDARD

if TYPE_CHECKING:
    from workflow_runs.service import RunService
    from workflow_runs.settings import Settings


@lru_cache(maxsize=1)
def default_service() -> RunService:
    from workflow_runs.orchestrator import StepFunctionsOrchestrator
    from workflow_runs.service import RunService
    from workflow_runs.settings import get_settings
    from workflow_runs.store import RunStore

    settings = get_settings()
    if not settings.state_machine_arn:
        raise RuntimeError("missing required setting: STATE_MACHINE_ARN")
    if settings.orchestration != STANDARD and not settings.express_state_machine_arn:
        raise RuntimeError("missing required setting: EXPRESS_STATE_MACHINE_ARN (or ORCHESTRATION=standard)")
    orchestrator = StepFunctionsOrchestrator(settings.state_machine_arn, settings.express_state_machine_arn)
    return RunService(RunStore(settings), orchestrator, settings)


def service_of(connection: HTTPConnection) -> RunService:
    injected = getattr(connection.app.state, "service", None)
    return injected if injected is not None else default_service()


def settings_of(connection: HTTPConnection) -> Settings:
    injected = getattr(connection.app.state, "settings", None)
    if injected is not None:
        return injected
    from workflow_runs.settings import get_settings  # pydantic on first use, not at import

    return get_settings()
