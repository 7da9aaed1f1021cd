"""A StepContext builder for the step type tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from workflow_runs.models import Retry, Step
from workflow_runs.settings import Settings
from workflow_runs_step_runner.steps.base import StepContext


@pytest.fixture
def make_ctx() -> Callable[..., StepContext]:
    def build(
        step_type: str,
        config: dict[str, Any],
        *,
        inputs: dict[str, Any] | None = None,
        steps: dict[str, dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
        thinking: list[str] | None = None,
        validate: bool = True,
        **settings: Any,
    ) -> StepContext:
        return StepContext(
            run_id="11111111-1111-4111-8111-111111111111",
            activity_run_id="22222222-2222-4222-8222-222222222222",
            # validate=False builds a step the PUT rules would refuse, to test the runtime checks.
            step=(Step if validate else Step.model_construct)(id="s1", type=step_type, config=config, retry=Retry()),
            attempt=1,
            inputs=inputs or {},
            steps=steps or {},
            env=env or {},
            settings=Settings(runs_table="runs", events_table="events", **settings),
            emit_thinking=(thinking.append if thinking is not None else (lambda text: None)),
        )

    return build
