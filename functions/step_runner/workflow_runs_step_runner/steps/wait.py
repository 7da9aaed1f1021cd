"""`wait`: the orchestrator waits `config.seconds` (a Wait state; the run shows `waiting`)."""

from __future__ import annotations

from workflow_runs_step_runner.steps.base import StepContext, StepError, StepOutcome
from workflow_runs_step_runner.steps.templating import render


class WaitStep:
    name = "wait"

    def run(self, ctx: StepContext) -> StepOutcome:
        # Validated as an integer at PUT time; rendered anyway so the contract matches every
        # other step (a lone `{{ … }}` yields a number).
        seconds = render(ctx.step.config.get("seconds"), ctx, path="config.seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise StepError(f"config.seconds must be a non-negative integer, got {seconds!r}")
        return StepOutcome(wait_seconds=seconds, outputs={"seconds": seconds})
