"""What a Lambda init phase rehearses so that a restored environment's first request costs
what a warm one does: DynamoDB calls answered in this process (nothing is sent), with
answers shaped like DynamoDB's.

botocore builds per client, on an operation's first call, what every later call reuses
(endpoint rules, the serializer, the signer) and resolves a shape's members the first time
an answer holds them: an empty answer leaves an item's attribute shapes for the first real
one. And CPython specializes a function's bytecode only after it has run a few times
(PEP 659): code run once at init is still generic on the first request. So each operation
is rehearsed several times (under SnapStart), with items holding every kind of attribute
value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .. import keys
from ..marshal import key
from ..models import ActivityRun, RunInput, Status, Workflow, WorkflowDefinition
from .records import NewRun
from .runs import RunWrites, activity_item
from .workflows import workflow_body

# Runs of a function's code before its bytecode is specialized, and a margin.
REHEARSALS = 12


def rounds() -> int:
    """How often to rehearse: REHEARSALS when a SnapStart snapshot will keep what they leave
    (the init runs once, at publish); once on an on-demand init, whose time a caller waits
    for along with the first request — twelve rounds would add tens of ms to save tenths."""
    return REHEARSALS if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start" else 1

_ITEM: dict[str, Any] = {
    keys.PK: {"S": "warm-up"}, keys.SK: {"S": "warm-up"}, "n": {"N": "1"}, "b": {"B": "d2FybQ=="},
    "t": {"BOOL": True}, "z": {"NULL": True}, "m": {"M": {"k": {"S": "v"}, "n": {"N": "2"}}},
    "l": {"L": [{"S": "v"}, {"N": "3"}]}, "ss": {"SS": ["a"]}, "ns": {"NS": ["1"]}, "bs": {"BS": ["d2FybQ=="]},
}
_KEY = key("warm-up", "warm-up")
_VALUES = {":v": {"S": "x"}, ":m": _ITEM["m"], ":l": _ITEM["l"], ":n": _ITEM["n"]}


def _calls(table: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The operations the functions call on `table`: the least valid input with every kind
    of value, and an answer as DynamoDB shapes it. (The table's own name: botocore caches
    its endpoint resolution per set of parameters, the table among them.)"""
    return {
        "query": ({"TableName": table, "KeyConditionExpression": "PK = :v", "ExpressionAttributeValues": _VALUES,
                   "ConsistentRead": True},
                  {"Items": [_ITEM], "Count": 1, "ScannedCount": 1, "LastEvaluatedKey": _KEY}),
        "get_item": ({"TableName": table, "Key": _KEY, "ConsistentRead": True}, {"Item": _ITEM}),
        "put_item": ({"TableName": table, "Item": _ITEM, "ConditionExpression": "attribute_not_exists(PK)"}, {}),
        "update_item": ({"TableName": table, "Key": _KEY, "UpdateExpression": "SET a = :m, b = :l, c = :n",
                         "ConditionExpression": "attribute_exists(PK) AND d = :v", "ExpressionAttributeValues": _VALUES,
                         "ReturnValues": "ALL_NEW"}, {"Attributes": _ITEM}),
        "delete_item": ({"TableName": table, "Key": _KEY}, {}),
        "transact_write_items": ({"TransactItems": [{"Put": {"TableName": table, "Item": _ITEM}},
                                                    {"Update": {"TableName": table, "Key": _KEY,
                                                                "UpdateExpression": "ADD n :n",
                                                                "ExpressionAttributeValues": {":n": _ITEM["n"]}}}]}, {}),
        "batch_get_item": ({"RequestItems": {table: {"Keys": [_KEY]}}},
                           {"Responses": {table: [_ITEM]}, "UnprocessedKeys": {}}),
    }


class _Body:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        content, self._content = self._content, b""
        yield content


def response(url: str, body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> Any:
    """An HTTP answer as botocore's HTTP session returns one, made here."""
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    fields = HTTPHeaders.from_dict(dict(headers or {"Content-Type": "application/x-amz-json-1.0"}))
    return AWSResponse(url, status, fields, _Body(body))


class _AnsweringSession:
    """In place of a client's HTTP session (the one thing that would send): every request
    answered with `answers[operation]` (its wire name: "Query") or `{}`."""

    def __init__(self, answers: Mapping[str, Mapping[str, Any]]) -> None:
        self._answers = {operation: json.dumps(answer).encode() for operation, answer in answers.items()}

    def send(self, request: Any) -> Any:
        return response(request.url, self._answers.get(operation_of(request), b"{}"))

    def close(self) -> None:
        pass


def operation_of(request: Any) -> str:
    """The DynamoDB operation a prepared request calls ("Query")."""
    target = request.headers.get("X-Amz-Target", b"")
    return (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]


@contextmanager
def answered_here(client: Any, answers: Mapping[str, Mapping[str, Any]]) -> Iterator[None]:
    """Inside, every DynamoDB call of `client` is answered in this process — with
    `answers[operation]` or `{}` — by the client's own pipeline down to where it would send.
    (Not an event handler: registering one empties botocore's handler lookup cache, which a
    first request would then rebuild.)"""
    endpoint = client._endpoint  # botocore has no public hook below its events
    sending = endpoint.http_session
    endpoint.http_session = _AnsweringSession(answers)
    try:
        yield
    finally:
        endpoint.http_session = sending


def warm_up(store: Any, times: int | None = None) -> None:
    """Each operation the functions use, on each of the store's tables, `times` times (by
    default `rounds()`) through the store's client, answered here."""
    times = rounds() if times is None else times
    client = store.client
    for table in (store.runs_table, store.events_table):
        calls = _calls(table)
        answers = {client.meta.method_to_api_mapping[name]: answer for name, (_, answer) in calls.items()}
        with answered_here(client, answers):
            for _ in range(times):
                for name, (params, _) in calls.items():
                    getattr(client, name)(**params)


_STAMP = "2026-01-01T00:00:00.000Z"


def _new_run(tenant: str, run_id: str, number: int, sealed_envs: str | None) -> tuple[NewRun, WorkflowDefinition]:
    """A scheduled run of a one-step workflow whose version `number` is its own: its id and
    its template's text (what a function caches per version is then built by each)."""
    definition = WorkflowDefinition.model_validate({
        "name": "rehearsal", "inputs": [{"name": "topic", "type": "string"}],
        "steps": [{"id": "a", "type": "transform", "config": {"output": f"{{{{ inputs.topic }}}} (rehearsal {number})"}}],
    })
    workflow = Workflow(id=f"00000000-0000-4000-8000-{number + 15:012x}", version=1, created_at=_STAMP,
                        updated_at=_STAMP, **definition.model_dump())
    return NewRun(run_id=run_id, tenant=tenant, workflow=workflow, inputs=[RunInput(name="topic", value="tides")],
                  sealed_envs=sealed_envs, created_at=_STAMP), definition


def _created_items(store: RunWrites, new: NewRun) -> list[dict[str, Any]]:
    """The run's own items as the store's creation writes them (head, envs)."""
    puts = [write["Put"]["Item"] for write in store.creation_writes(new) if "Put" in write]
    return [item for item in puts if item[keys.PK]["S"] == keys.run_pk(new.run_id)]


def run_items(store: RunWrites, tenant: str, run_id: str) -> list[dict[str, Any]]:
    """A completed one-step run's items as the store writes them (head, envs, its step): what
    a Query of the run answers, for rehearsing a read of it."""
    new, _ = _new_run(tenant, run_id, 0, sealed_envs="sealed")
    step = ActivityRun(id=f"{run_id}:a:1", step_id="a", step_name="a", status=Status.COMPLETED, attempt=1,
                       outputs={"output": "tides"}, created_at=_STAMP, updated_at=_STAMP)
    return [*_created_items(store, new), activity_item(run_id, 0, step)]


def step_answers(store: RunWrites, tenant: str, run_id: str, number: int) -> dict[str, dict[str, Any]]:
    """DynamoDB's answers to a step runner running the one step of a scheduled run of workflow
    version `number` (see `_new_run`), with no envs (a run with envs would unseal them, with
    KMS in Lambda): the run's Query finds it as created, the version's
    GetItem finds the version as the store writes it, and every write succeeds (`{}`)."""
    new, definition = _new_run(tenant, run_id, number, sealed_envs=None)
    items = _created_items(store, new)
    version = {**key(keys.workflows_pk(tenant), keys.version_sk(new.workflow.id, new.workflow.version)),
               **workflow_body(tenant, new.workflow, definition)}
    return {"Query": {"Items": items, "Count": len(items), "ScannedCount": len(items)}, "GetItem": {"Item": version}}
