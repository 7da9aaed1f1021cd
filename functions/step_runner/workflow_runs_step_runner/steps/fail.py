"""`fail`: fails the step on purpose (guards, tests). Never retried."""

from __future__ import annotations

from workflow_runs_step_runner.steps.base import StepContext, StepError, StepOutcome
from workflow_runs_step_runner.steps.templating import render

DEFAULT_MESSAGE = "failed by a fail step"


class FailStep:
    name = "fail"

    def run(self, ctx: StepContext) -> StepOutcome:
        message = render(ctx.step.config.get("message") or "", ctx, path="config.message")
        raise StepError(str(message) if message not in ("", None) else DEFAULT_MESSAGE, retryable=False)
