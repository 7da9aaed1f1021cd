"""`transform`: renders `config.output` into the step's outputs.

`output` written as an object → the outputs are that object, rendered. Anything else (a
template string, a number, a list) → the outputs are `{"value": <rendered>}`. The shape
follows what the workflow author wrote, never the data a template happens to produce.
"""

from __future__ import annotations

from collections.abc import Mapping

from workflow_runs_step_runner.steps.base import StepContext, StepOutcome
from workflow_runs_step_runner.steps.templating import render


class TransformStep:
    name = "transform"

    def run(self, ctx: StepContext) -> StepOutcome:
        output = ctx.step.config.get("output")
        rendered = render(output, ctx, path="config.output")
        if isinstance(output, Mapping):
            return StepOutcome(outputs=rendered)
        return StepOutcome(outputs={"value": rendered})
