"""The orchestrator port: what the API and stream apps ask of Step Functions.

Only ids travel to the orchestrator (a Step Functions input is capped at 256 KB): the
execution input is `{"runId": …}` and the execution name is the run id, so a repeated
start of the same run is harmless.
"""

from __future__ import annotations

from typing import Any, Protocol


class Orchestrator(Protocol):
    def start(self, run_id: str) -> None:
        """Start the run's execution; starting the same run twice starts it once."""
        ...

    def stop(self, run_id: str, reason: str | None = None) -> bool:
        """Stop the run's execution. False when no execution exists for the run."""
        ...

    def describe(self, run_id: str) -> str | None:
        """RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED, or None when none exists."""
        ...


class StepFunctionsOrchestrator:
    def __init__(self, state_machine_arn: str, client: Any | None = None):
        self._arn = state_machine_arn
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # noqa: PLC0415 - deferred to first use

            self._client = boto3.session.Session().client("stepfunctions")
        return self._client

    def execution_arn(self, run_id: str) -> str:
        # arn:aws:states:region:account:stateMachine:name → …:execution:name:runId
        prefix, name = self._arn.rsplit(":stateMachine:", 1)
        return f"{prefix}:execution:{name}:{run_id}"

    def start(self, run_id: str) -> None:
        import json  # noqa: PLC0415

        try:
            self.client.start_execution(stateMachineArn=self._arn, name=run_id, input=json.dumps({"runId": run_id}))
        except self.client.exceptions.ExecutionAlreadyExists:
            return  # the same run was started before: idempotent by name

    def stop(self, run_id: str, reason: str | None = None) -> bool:
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
