"""Run the real `infra/state_machine.asl.json` in moto's Step Functions interpreter, with its
Lambda tasks routed to an in-process function (the real step runner) — see LOCAL-AWS.md.

moto's interpreter invokes Lambda through a fresh client of boto3's default session, so a
`before-call.lambda.Invoke` handler registered on that session answers every Invoke with
the function's reply; an exception becomes `FunctionError: Unhandled` with its class name
as `errorType`, exactly what Lambda reports (so Retry/Catch `ErrorEquals` match class names).
The step runner's DynamoDB client has an explicit endpoint_url (DynamoDB Local), which
moto does not intercept.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
from workflow_runs_dev import aws_calls

ASL_FILE = Path(__file__).resolve().parents[2] / "infra" / "state_machine.asl.json"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:step-runner"
ROLE_ARN = "arn:aws:iam::123456789012:role/state-machine"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


def definition(function_arn: str = FUNCTION_ARN) -> str:
    """The ASL file with its CDK substitutions applied, as the stack deploys it."""
    text = ASL_FILE.read_text()
    for name in ("StepRunnerFunctionArn", "RecordFailureFunctionArn"):
        text = text.replace("${" + name + "}", function_arn)
    return text


@dataclass
class LambdaRouter:
    """Answers lambda Invoke calls with `function(event)`; records every event it got."""

    function: Callable[[dict[str, Any]], Any]
    events: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, model: Any = None, params: dict | None = None, **_: Any):
        from botocore.awsrequest import AWSResponse
        from botocore.response import StreamingBody

        body = (params or {}).get("body") or b"{}"
        event = json.loads(body.decode() if isinstance(body, bytes) else body)
        self.events.append(event)
        reply: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
        try:
            with aws_calls.acting_as("step-runner"):  # the state machine invokes the step runner
                payload = json.dumps(self.function(event)).encode()
        except Exception as exc:  # noqa: BLE001 - what Lambda does with an unhandled exception
            payload = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
            reply["FunctionError"] = "Unhandled"
        reply["Payload"] = StreamingBody(io.BytesIO(payload), len(payload))
        return AWSResponse("https://lambda.local/invoke", 200, {}, None), reply


@dataclass
class Machine:
    client: Any
    arn: str
    router: LambdaRouter
    slept: list[float]  # the retry intervals the interpreter chose (not slept)

    def start(self, run_id: str) -> str:
        # moto needs an explicit name; the execution name is the run id, as in the stack.
        return self.client.start_execution(stateMachineArn=self.arn, name=run_id,
                                           input=json.dumps({"runId": run_id}))["executionArn"]

    def execution_arn(self, run_id: str) -> str:
        prefix, name = self.arn.rsplit(":stateMachine:", 1)
        return f"{prefix}:execution:{name}:{run_id}"

    def status(self, execution_arn: str) -> str:
        return self.client.describe_execution(executionArn=execution_arn)["status"]

    def wait_until_ended(self, execution_arn: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(execution_arn)
            if status != "RUNNING":
                return status
            time.sleep(0.02)
        raise TimeoutError(f"{execution_arn} still RUNNING after {timeout}s")

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        request: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = self.client.get_execution_history(**request)
            events += page["events"]
            if not page.get("nextToken"):
                return events
            request["nextToken"] = page["nextToken"]

    def entered_states(self, execution_arn: str) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.history(execution_arn)
                if e["type"].endswith("StateEntered")]

    def run(self, run_id: str, timeout: float = 20.0) -> tuple[str, str]:
        arn = self.start(run_id)
        return arn, self.wait_until_ended(arn, timeout)


@contextlib.contextmanager
def instant_retries() -> Iterator[list[float]]:
    """The interpreter sleeps for real between retries (IntervalSeconds ≥ 1): record the
    intervals it chose instead of sleeping them."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    slept: list[float] = []
    original = retrier_decl.time
    retrier_decl.time = SimpleNamespace(sleep=slept.append, time=time.time, monotonic=time.monotonic)
    try:
        yield slept
    finally:
        retrier_decl.time = original


@contextlib.contextmanager
def state_machine(function: Callable[[dict[str, Any]], Any], kind: str = "STANDARD") -> Iterator[Machine]:
    """The real ASL under moto as a STANDARD or an EXPRESS machine (moto runs both with the
    same interpreter), its Lambda tasks answered by `function`, retries instant."""
    from moto import mock_aws

    router = LambdaRouter(function)
    with mock_aws(config=MOTO_CONFIG), instant_retries() as slept:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
        session.events.register("before-call.lambda.Invoke", router, unique_id="sfn-harness-invoke")
        try:
            client = session.client("stepfunctions", region_name="us-east-1")
            arn = client.create_state_machine(
                name=f"runs-{uuid.uuid4().hex[:8]}", definition=definition(), roleArn=ROLE_ARN, type=kind
            )["stateMachineArn"]
            machine = Machine(client=client, arn=arn, router=router, slept=slept)
            yield machine
            _drain(machine)
        finally:
            session.events.unregister("before-call.lambda.Invoke", unique_id="sfn-harness-invoke")


def _drain(machine: Machine, timeout: float = 10.0) -> None:
    """Let no execution thread outlive the mock (it would call real endpoints)."""
    executions = machine.client.list_executions(stateMachineArn=machine.arn, statusFilter="RUNNING")["executions"]
    for execution in executions:
        machine.client.stop_execution(executionArn=execution["executionArn"])
        with contextlib.suppress(TimeoutError):
            machine.wait_until_ended(execution["executionArn"], timeout)
