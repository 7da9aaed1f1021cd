"""The orchestrator port: what the API and stream apps ask of Step Functions.

Only ids travel to the orchestrator (a Step Functions input is capped at 256 KB): the
execution input is `{"runId": …}` and the execution name is the run id, so a repeated
start of the same run is harmless (a Standard machine starts it once; an Express one may
start it twice, and the second execution's steps lose the store's conditional opens).

Two run classes, one definition (docs/orchestration.md): `standard` runs on the Standard
state machine, `express` on the Express one. Express has no StopExecution and no
DescribeExecution by name: a stop of an Express run only relies on the store's cancel (the
execution ends at its next step, changing nothing), and `describe` answers for Standard
runs only.
"""

from __future__ import annotations

from typing import Any, Protocol

from .states import EXPRESS, STANDARD


class Orchestrator(Protocol):
    def start(self, run_id: str, orchestration: str = STANDARD) -> None:
        """Start the run's execution on its class's state machine."""
        ...

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = STANDARD) -> bool:
        """Stop the run's execution. False when no execution exists for the run."""
        ...

    def describe(self, run_id: str) -> str | None:
        """RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED, or None when none exists
        (a Standard run's execution)."""
        ...

    def send_task_success(self, token: str, output: str) -> None:
        """Resume the execution waiting on `token` (an approval step), with `output` (JSON)."""
        ...

    def send_task_failure(self, token: str, error: str, cause: str) -> None:
        """End the task waiting on `token` with `error` (the ASL's Catch takes it)."""
        ...


class StepFunctionsOrchestrator:
    def __init__(self, state_machine_arn: str, express_state_machine_arn: str | None = None,
                 client: Any | None = None):
        self._arn = state_machine_arn
        self._express_arn = express_state_machine_arn
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from . import aws_clients

            self._client = aws_clients.make("stepfunctions")
        return self._client

    def execution_arn(self, run_id: str) -> str:
        # arn:aws:states:region:account:stateMachine:name → …:execution:name:runId
        prefix, name = self._arn.rsplit(":stateMachine:", 1)
        return f"{prefix}:execution:{name}:{run_id}"

    def start(self, run_id: str, orchestration: str = STANDARD) -> None:
        import json

        arn = self._arn
        if orchestration == EXPRESS:
            if not self._express_arn:
                raise RuntimeError("missing required setting: EXPRESS_STATE_MACHINE_ARN")
            arn = self._express_arn
        try:
            self.client.start_execution(stateMachineArn=arn, name=run_id, input=json.dumps({"runId": run_id}))
        except self.client.exceptions.ExecutionAlreadyExists:
            return  # the same run was started before: idempotent by name

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = STANDARD) -> bool:
        if orchestration == EXPRESS:
            # No StopExecution for Express: the store's cancel is the truth, and the
            # execution (at most five minutes long) ends at its next step, changing nothing.
            return True
        try:
            self.client.stop_execution(
                executionArn=self.execution_arn(run_id), cause=(reason or "cancelled")[:32768]
            )
            return True
        except self.client.exceptions.ExecutionDoesNotExist:
            return False

    def describe(self, run_id: str) -> str | None:
        try:
            return self.client.describe_execution(executionArn=self.execution_arn(run_id))["status"]
        except self.client.exceptions.ExecutionDoesNotExist:
            return None

    def send_task_success(self, token: str, output: str) -> None:
        self.client.send_task_success(taskToken=token, output=output)

    def send_task_failure(self, token: str, error: str, cause: str) -> None:
        self.client.send_task_failure(taskToken=token, error=error, cause=cause)
