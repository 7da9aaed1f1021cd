"""`approval`: a person decides. The step renders its prompt; the runner parks it with a
task token (the run and the step show `waiting`) until `…/approve`, `…/reject` or its
`timeoutSeconds` (docs/steps.md)."""

from __future__ import annotations

from workflow_runs.models import approval_timeout_seconds

from workflow_runs_step_runner.steps.base import StepContext, StepError, StepOutcome
from workflow_runs_step_runner.steps.templating import render


class ApprovalStep:
    name = "approval"

    def run(self, ctx: StepContext) -> StepOutcome:
        prompt = render(ctx.step.config.get("prompt"), ctx, path="config.prompt")
        if not isinstance(prompt, str):
            prompt = str(prompt)
        if not prompt:
            raise StepError("config.prompt rendered to an empty prompt")
        return StepOutcome(outputs={"prompt": prompt}, approval_timeout_seconds=approval_timeout_seconds(ctx.step))
