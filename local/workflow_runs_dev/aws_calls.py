"""Every AWS call each function makes on this machine, written down as the IAM requests AWS
would authorise, so a test can judge them against the synthesized policies (tests/iam).

- Who: the function whose code is running. The local runtime says so where it runs each
  function's handler (`acting_as`: the API and stream apps per request, the step runner and
  the reconciler in the local orchestrator, the projector and its stream reads in the
  poller, which stands for the event source mapping that reads with the projector's role).
  A call made outside any function (a test's own reads, table creation) is not recorded.
- What: each call of every client `workflow_runs.aws_clients` makes (`before-parameter-build`)
  becomes one IAM request per authorised action: `TransactWriteItems` is one `PutItem`,
  `UpdateItem`, `DeleteItem` or `ConditionCheckItem` per item, a query of an index is on
  `…:table/NAME/index/INDEX`, KMS calls carry `kms:EncryptionContext:<key>` and
  `kms:EncryptionContextKeys`.
- Where: the resource ARN as deployed, with what differs between this machine and the stack
  left as the setting that carries it (`${RUNS_TABLE}`, `${ENVS_KMS_KEY_ID}`,
  `${STATE_MACHINE_ARN.name}`, `${AWS::Region}`); the evaluator fills each from the function's
  own environment in the synthesized template.

On with `WORKFLOW_RUNS_RECORD_AWS_CALLS=<file>`: each distinct request is appended once per
process as a JSON line (the file may be shared by several processes). Off, it costs a context
variable set per handler call.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

RECORD_ENV = "WORKFLOW_RUNS_RECORD_AWS_CALLS"
ARN_PREFIX = "arn:aws:{service}:${{AWS::Region}}:${{AWS::AccountId}}:"
# The settings whose values name deployed resources (Settings field → environment variable).
RESOURCE_SETTINGS = {
    "runs_table": "RUNS_TABLE",
    "events_table": "EVENTS_TABLE",
    "envs_kms_key_id": "ENVS_KMS_KEY_ID",
    "tokens_kms_key_id": "TOKENS_KMS_KEY_ID",
    "fingerprint_kms_key_id": "FINGERPRINT_KMS_KEY_ID",
    "state_machine_arn": "STATE_MACHINE_ARN",
    "express_state_machine_arn": "EXPRESS_STATE_MACHINE_ARN",
}
# TransactWriteItems authorises each item as its own action.
_TRANSACT_WRITE_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                           "ConditionCheck": "ConditionCheckItem"}
_STREAM_TABLE = re.compile(r"table/([^/]+)/stream/")

_function: ContextVar[str | None] = ContextVar("workflow_runs_function", default=None)


@contextlib.contextmanager
def acting_as(function: str) -> Iterator[None]:
    """The AWS calls made inside are `function`'s (api, stream, step-runner, projector, reconciler)."""
    token = _function.set(function)
    try:
        yield
    finally:
        _function.reset(token)


def as_function(function: str, call: Callable[..., Any]) -> Callable[..., Any]:
    """`call`, whose AWS calls are `function`'s."""
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with acting_as(function):
            return call(*args, **kwargs)

    return wrapped


def asgi_as_function(function: str, app: Any) -> Any:
    """An ASGI app whose every request's AWS calls are `function`'s (the worker threads of
    sync routes inherit the request's context)."""
    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        with acting_as(function):
            await app(scope, receive, send)

    return wrapped


class CallRecorder:
    def __init__(self, path: str):
        self._path = path
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._names: dict[str, str] = {}
        self._stop: Callable[[], None] | None = None

    def know(self, settings: Any) -> None:
        """The local names of the deployed resources `settings` point at."""
        for field, variable in RESOURCE_SETTINGS.items():
            value = getattr(settings, field, None)
            if value:
                self._names[value] = variable

    def start(self) -> CallRecorder:
        from workflow_runs import aws_clients

        self._stop = aws_clients.observe(self.observe)
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def observe(self, service: str, operation: str, params: dict[str, Any]) -> None:
        function = _function.get()
        if function is None:
            return
        for action, resource, context in iam_requests(service, operation, params, self._name):
            line = json.dumps({"function": function, "operation": f"{service}:{operation}", "action": action,
                               "resource": resource, "context": context}, sort_keys=True)
            with self._lock:
                if line in self._seen:
                    continue
                self._seen.add(line)
                with open(self._path, "a", encoding="utf-8") as out:
                    out.write(line + "\n")

    def _name(self, local: str) -> str:
        """`${SETTING}` for a value a setting carries (a table name, a key id, a machine ARN)."""
        variable = self._names.get(local)
        return f"${{{variable}}}" if variable else local


_recorder: CallRecorder | None = None


def from_environment() -> CallRecorder | None:
    """The process's recorder when RECORD_ENV names a file (started once), else None."""
    global _recorder
    path = os.environ.get(RECORD_ENV)
    if not path:
        return None
    if _recorder is None:
        _recorder = CallRecorder(path).start()
    return _recorder


def know(settings: Any) -> None:
    """Tell the process's recorder (if any) the local names `settings` give the resources."""
    recorder = from_environment()
    if recorder is not None:
        recorder.know(settings)


# --------------------------------------------------------------------------- the mapping


def iam_requests(service: str, operation: str, params: dict[str, Any],
                 name: Callable[[str], str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, resource ARN, context keys) for each authorisation a call needs."""
    if service == "dynamodb":
        return _dynamodb(operation, params, name)
    if service == "dynamodbstreams":
        return _streams(operation, params, name)
    if service == "stepfunctions":
        return _states(operation, params, name)
    if service == "kms":
        return _kms(operation, params, name)
    if service == "bedrock-runtime":
        model = str(params.get("modelId", ""))
        action = "bedrock:InvokeModelWithResponseStream" if "Stream" in operation else "bedrock:InvokeModel"
        resource = model if model.startswith("arn:") else f"arn:aws:bedrock:${{AWS::Region}}::foundation-model/{model}"
        return [(action, resource, {})]
    return [(f"{service}:{operation}", "*", {})]


def _table(name: Callable[[str], str], table: str, index: str | None = None) -> str:
    arn = ARN_PREFIX.format(service="dynamodb") + f"table/{name(table)}"
    return f"{arn}/index/{index}" if index else arn


def _dynamodb(operation: str, params: dict[str, Any], name: Callable[[str], str]) -> list[tuple[str, str, dict]]:
    if operation == "TransactWriteItems":
        return [(f"dynamodb:{_TRANSACT_WRITE_ACTIONS[kind]}", _table(name, body["TableName"]), {})
                for item in params.get("TransactItems", []) for kind, body in item.items()]
    if operation == "TransactGetItems":
        return [("dynamodb:GetItem", _table(name, item["Get"]["TableName"]), {})
                for item in params.get("TransactItems", [])]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{operation}", _table(name, table), {}) for table in params.get("RequestItems", {})]
    return [(f"dynamodb:{operation}", _table(name, params["TableName"], params.get("IndexName")), {})]


def _streams(operation: str, params: dict[str, Any], name: Callable[[str], str]) -> list[tuple[str, str, dict]]:
    if operation == "ListStreams":  # no resource-level permission: authorised on "*"
        return [("dynamodb:ListStreams", "*", {})]
    # A stream is named by its table: the deployed one's label is the template's own.
    found = _STREAM_TABLE.search(str(params.get("StreamArn") or params.get("ShardIterator") or ""))
    table = name(found.group(1)) if found else "UNKNOWN"
    return [(f"dynamodb:{operation}", f"{table[:-1]}.stream}}" if table.startswith("${") else table, {})]


def _states(operation: str, params: dict[str, Any], name: Callable[[str], str]) -> list[tuple[str, str, dict]]:
    if "stateMachineArn" in params:
        return [(f"states:{operation}", name(params["stateMachineArn"]), {})]
    if "executionArn" in params:
        machine, run = params["executionArn"].replace(":execution:", ":stateMachine:").rsplit(":", 1)
        variable = name(machine)
        kind = "express" if variable == "${EXPRESS_STATE_MACHINE_ARN}" else "execution"
        resource = (ARN_PREFIX.format(service="states") + f"{kind}:{variable[:-1]}.name}}:{run}"
                    if variable.startswith("${") else params["executionArn"])
        return [(f"states:{operation}", resource, {})]
    # SendTask*: no resource-level permission (the token names the task): authorised on "*".
    return [(f"states:{operation}", "*", {})]


def _kms(operation: str, params: dict[str, Any], name: Callable[[str], str]) -> list[tuple[str, str, dict]]:
    context_keys: dict[str, Any] = {}
    encryption_context = params.get("EncryptionContext") or {}
    for key, value in encryption_context.items():
        context_keys[f"kms:EncryptionContext:{key}"] = value
    if encryption_context:
        context_keys["kms:EncryptionContextKeys"] = sorted(encryption_context)
    return [(f"kms:{operation}", name(str(params.get("KeyId", "UNKNOWN"))), context_keys)]


# --------------------------------------------------------------------------- Step Functions

# Where the local orchestrator stands for the state machines (nothing calls AWS), the calls
# the real StepFunctionsOrchestrator would make are recorded from it, made against a client
# that only records them.
LOCAL_STATE_MACHINE_ARN = "arn:aws:states:local:000000000000:stateMachine:workflow-runs"
LOCAL_EXPRESS_STATE_MACHINE_ARN = "arn:aws:states:local:000000000000:stateMachine:workflow-runs-express"


class _PlannedStepFunctions:
    """A Step Functions client that records each call and answers as an empty success."""

    class exceptions:  # botocore's spelling, which the orchestrator uses
        class ExecutionAlreadyExists(Exception):
            pass

        class ExecutionDoesNotExist(Exception):
            pass

    def __init__(self, recorder: CallRecorder):
        self._recorder = recorder

    def __getattr__(self, method: str) -> Callable[..., dict[str, Any]]:
        operation = "".join(part.title() for part in method.split("_"))

        def call(**params: Any) -> dict[str, Any]:
            self._recorder.observe("stepfunctions", operation, params)
            return {"status": "RUNNING"}

        return call


class RecordedOrchestrator:
    """The local orchestrator, with the Step Functions calls each of its port's calls stands for
    recorded as the deployed orchestrator makes them."""

    def __init__(self, local: Any, recorder: CallRecorder):
        from workflow_runs.orchestrator import StepFunctionsOrchestrator

        self._local = local
        recorder._names.update({LOCAL_STATE_MACHINE_ARN: "STATE_MACHINE_ARN",
                                LOCAL_EXPRESS_STATE_MACHINE_ARN: "EXPRESS_STATE_MACHINE_ARN"})
        self._planned = StepFunctionsOrchestrator(LOCAL_STATE_MACHINE_ARN, LOCAL_EXPRESS_STATE_MACHINE_ARN,
                                                  client=_PlannedStepFunctions(recorder))

    def start(self, run_id: str, orchestration: str = "standard") -> None:
        self._planned.start(run_id, orchestration)
        self._local.start(run_id, orchestration)

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = "standard") -> bool:
        self._planned.stop(run_id, reason, orchestration)
        return bool(self._local.stop(run_id, reason, orchestration))

    def describe(self, run_id: str) -> str | None:
        self._planned.describe(run_id)
        return self._local.describe(run_id)

    def send_task_success(self, token: str, output: str) -> None:
        self._planned.send_task_success(token, output)
        self._local.send_task_success(token, output)

    def send_task_failure(self, token: str, error: str, cause: str) -> None:
        self._planned.send_task_failure(token, error, cause)
        self._local.send_task_failure(token, error, cause)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._local, name)
