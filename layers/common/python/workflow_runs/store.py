"""The run store: the only code in the project that talks to DynamoDB.

Every status change goes through one `TransactWriteItems` that updates the item
conditionally on its old status and moves the per-status counters with it, so a
transition happens exactly once and the counts stay exact. No request path scans.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Sequence

from . import keys
from .errors import Conflict, NotFound, TransitionRejected
from .models import (
    NON_TERMINAL,
    TERMINAL,
    ActivityRun,
    RunError,
    RunInput,
    Status,
    Step,
    Workflow,
    WorkflowDefinition,
    WorkflowRun,
    WorkflowRunSummary,
    can_transition,
    utc_now,
)
from .settings import Settings

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
THINKING_TTL_SECONDS = 24 * 3600


@lru_cache(maxsize=8)
def dynamodb_client(endpoint_url: str | None = None):
    import boto3  # noqa: PLC0415 - deferred: the stream app and the tests import this module freely
    from botocore.config import Config  # noqa: PLC0415

    config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=64)
    return boto3.session.Session().client("dynamodb", endpoint_url=endpoint_url, config=config)


# --- item (de)serialisation: JSON payloads are kept as strings, so no Decimal ever leaks ---


def _s(value: str) -> dict:
    return {"S": value}


def _n(value: int) -> dict:
    return {"N": str(value)}


def _json(value: Any) -> dict:
    return {"S": json.dumps(value, separators=(",", ":"), ensure_ascii=False)}


def _plain(item: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, typed in item.items():
        (kind, value), = typed.items()
        out[name] = int(value) if kind == "N" else value if kind in ("S", "BOOL") else None
    return out


@dataclass
class RunRecord:
    """A run as stored: the public run plus what only the platform may see."""

    run: WorkflowRun
    tenant: str
    workflow_version: int
    steps: list[Step]
    sealed_envs: str | None = None
    execution_started: bool = False

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def status(self) -> Status:
        return self.run.status


# (step index, the activity run to write, the statuses it must have now — None for a new one)
ActivityWrite = tuple[int, ActivityRun, Iterable[Status] | None]


@dataclass
class Page:
    items: list[WorkflowRunSummary]
    total: int


@dataclass
class NewRun:
    run_id: str
    tenant: str
    workflow: Workflow
    inputs: list[RunInput]
    sealed_envs: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    created_at: str = field(default_factory=utc_now)


class RunStore:
    def __init__(self, settings: Settings, client: Any | None = None):
        self.settings = settings
        self._runs = settings.runs_table
        self._events = settings.events_table
        self._client = client if client is not None else dynamodb_client(settings.dynamodb_endpoint_url)
        self._event_ttl = settings.event_ttl_days * 86400

    @property
    def client(self) -> Any:
        return self._client

    # ---------------------------------------------------------------- workflows

    def put_workflow(self, tenant: str, workflow_id: str, definition: WorkflowDefinition) -> Workflow:
        """Create or replace; the version goes up by one, conditionally on the one we read."""
        key = {keys.PK: _s(keys.workflows_pk(tenant)), keys.SK: _s(keys.workflow_sk(workflow_id))}
        now = utc_now()
        for _ in range(5):
            current = self._client.get_item(TableName=self._runs, Key=key, ConsistentRead=True).get("Item")
            old = _plain(current) if current else None
            workflow = Workflow(
                id=workflow_id,
                version=(old["version"] + 1) if old else 1,
                created_at=old["createdAt"] if old else now,
                updated_at=now,
                **definition.model_dump(),
            )
            item = {
                **key,
                "id": _s(workflow_id),
                "tenant": _s(tenant),
                "version": _n(workflow.version),
                "name": _s(workflow.name),
                "createdAt": _s(workflow.created_at),
                "updatedAt": _s(now),
                "definition": _json(definition.dump()),
            }
            condition = (
                {"ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": _n(old["version"])}}
                if old
                else {"ConditionExpression": "attribute_not_exists(PK)"}
            )
            # The workflow's counter item exists from its first version on, so the dashboard
            # answers an unknown workflow with one read (a missing counter is a 404).
            writes = [{"Put": {"TableName": self._runs, "Item": item, **condition}}]
            if not old:
                writes.append(self._counter_touch(tenant, workflow_id, workflow.name))
            try:
                self._client.transact_write_items(TransactItems=writes)
                return workflow
            except self._client.exceptions.TransactionCanceledException:
                continue  # a concurrent PUT won; read again and bump past it
        raise Conflict("the workflow is being changed concurrently; try again")

    def get_workflow(self, tenant: str, workflow_id: str) -> Workflow:
        item = self._client.get_item(
            TableName=self._runs,
            Key={keys.PK: _s(keys.workflows_pk(tenant)), keys.SK: _s(keys.workflow_sk(workflow_id))},
        ).get("Item")
        if not item:
            raise NotFound(f"workflow {workflow_id} not found")
        return _workflow_from(_plain(item))

    def list_workflows(self, tenant: str, page: int, limit: int) -> tuple[list[Workflow], int]:
        items = list(
            self._query_all(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
                ExpressionAttributeValues={":pk": _s(keys.workflows_pk(tenant)), ":p": _s(keys.WORKFLOW_SK_PREFIX)},
            )
        )
        workflows = sorted((_workflow_from(_plain(i)) for i in items), key=lambda w: (w.name.casefold(), w.id))
        start = (page - 1) * limit
        return workflows[start : start + limit], len(workflows)

    # ---------------------------------------------------------------- runs: writes

    def create_run(self, new: NewRun) -> tuple[RunRecord, bool]:
        """Write a scheduled run and count it. Returns (record, created).

        With an idempotency key, the key is claimed in the same transaction: a repeat with
        the same request returns the first run (created=False); a different request → Conflict.
        """
        wf = new.workflow
        status = Status.SCHEDULED
        item = {
            keys.PK: _s(keys.run_pk(new.run_id)),
            keys.SK: _s(keys.RUN_SK),
            keys.GSK: _s(f"{new.created_at}#{new.run_id}"),
            "id": _s(new.run_id),
            "tenant": _s(new.tenant),
            "workflowId": _s(wf.id),
            "workflowName": _s(wf.name),
            "workflowVersion": _n(wf.version),
            "status": _s(status.value),
            "inputs": _json([i.dump() for i in new.inputs]),
            "steps": _json([s.dump() for s in wf.steps]),
            "createdAt": _s(new.created_at),
            "updatedAt": _s(new.created_at),
            keys.INDEX_PARTITION_KEYS[keys.GSI_ACTIVE]: _s(keys.active_shard_key(new.run_id)),
            **{k: _s(v) for k, v in keys.run_index_keys(new.tenant, wf.id, wf.name, status.value).items()},
        }
        if new.sealed_envs:
            item["envs"] = _s(new.sealed_envs)
        writes = [{"Put": {"TableName": self._runs, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}]
        writes += self._counter_updates(new.tenant, wf.id, wf.name, {status: 1})
        if new.idempotency_key:
            writes.append(
                {
                    "Put": {
                        "TableName": self._runs,
                        "Item": {
                            keys.PK: _s(keys.idempotency_pk(new.tenant, new.idempotency_key)),
                            keys.SK: _s(keys.IDEMPOTENCY_SK),
                            "runId": _s(new.run_id),
                            "requestHash": _s(new.request_hash or ""),
                            keys.TTL_ATTRIBUTE: _n(int(time.time()) + IDEMPOTENCY_TTL_SECONDS),
                        },
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                }
            )
        try:
            self._client.transact_write_items(TransactItems=writes)
        except self._client.exceptions.TransactionCanceledException:
            if new.idempotency_key:
                return self._replay_idempotent(new), False
            raise
        # What we just wrote, without reading it back.
        run = WorkflowRun(id=new.run_id, workflow_id=wf.id, workflow_name=wf.name, status=status,
                          inputs=new.inputs, created_at=new.created_at, updated_at=new.created_at)
        return RunRecord(run=run, tenant=new.tenant, workflow_version=wf.version, steps=list(wf.steps),
                         sealed_envs=new.sealed_envs), True

    def _replay_idempotent(self, new: NewRun) -> RunRecord:
        claim = self._client.get_item(
            TableName=self._runs,
            Key={keys.PK: _s(keys.idempotency_pk(new.tenant, new.idempotency_key or "")), keys.SK: _s(keys.IDEMPOTENCY_SK)},
            ConsistentRead=True,
        ).get("Item")
        if not claim:
            raise Conflict("the Idempotency-Key is being used by a concurrent request; try again")
        claim = _plain(claim)
        if claim["requestHash"] != (new.request_hash or ""):
            raise Conflict("this Idempotency-Key was used with a different request body")
        return self.get_run_record(claim["runId"])

    def mark_execution_started(self, run_id: str) -> None:
        self._client.update_item(
            TableName=self._runs,
            Key={keys.PK: _s(keys.run_pk(run_id)), keys.SK: _s(keys.RUN_SK)},
            UpdateExpression="SET executionStarted = :t",
            ExpressionAttributeValues={":t": {"BOOL": True}},
        )

    def transition_run(
        self,
        record: RunRecord,
        new: Status,
        *,
        error: RunError | None = None,
        cancel_reason: str | None = None,
        activities: Sequence[ActivityWrite] = (),
    ) -> RunRecord:
        """Move a run from its current status to `new`, with its counters, exactly once.

        `activities` ride in the same transaction (a step's start with the run's move to
        running, or the open steps closed with a cancel), so readers never see one without
        the other.
        Raises TransitionRejected when the stored status is no longer the one we read (or
        the move is not allowed, or the activity's own condition failed): the caller lost a
        race and must not act on the old state.
        """
        old = record.status
        if not can_transition(old, new):
            raise TransitionRejected(f"{old.value} → {new.value} is not allowed")
        run = record.run
        now = utc_now()
        sets = ["#st = :new", "updatedAt = :now"]
        values: dict[str, dict] = {":new": _s(new.value), ":old": _s(old.value), ":now": _s(now)}
        index_keys = keys.run_index_keys(record.tenant, run.workflow_id, run.workflow_name or "", new.value)
        for attribute in keys.STATUS_INDEX_ATTRIBUTES:
            sets.append(f"{attribute} = :{attribute}")
            values[f":{attribute}"] = _s(index_keys[attribute])
        if error is not None:
            sets.append("#err = :err")
            values[":err"] = _json(error.dump())
        if cancel_reason is not None:
            sets.append("cancelReason = :reason")
            values[":reason"] = _s(cancel_reason)
        expression = "SET " + ", ".join(sets)
        if new in TERMINAL:
            expression += " REMOVE " + keys.INDEX_PARTITION_KEYS[keys.GSI_ACTIVE]
        names = {"#st": "status"}
        if error is not None:
            names["#err"] = "error"
        writes = [
            {
                "Update": {
                    "TableName": self._runs,
                    "Key": {keys.PK: _s(keys.run_pk(run.id)), keys.SK: _s(keys.RUN_SK)},
                    "UpdateExpression": expression,
                    "ConditionExpression": "#st = :old",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        writes += self._counter_updates(record.tenant, run.workflow_id, run.workflow_name or "", {new: 1, old: -1})
        writes += [self._activity_put(run.id, write) for write in activities]
        try:
            self._client.transact_write_items(TransactItems=writes)
        except self._client.exceptions.TransactionCanceledException as exc:
            raise TransitionRejected(f"run {run.id} is no longer {old.value}") from exc
        updated = run.model_copy(
            update={
                "status": new,
                "updated_at": now,
                "error": error if error is not None else run.error,
                "cancel_reason": cancel_reason if cancel_reason is not None else run.cancel_reason,
            }
        )
        return RunRecord(
            run=updated,
            tenant=record.tenant,
            workflow_version=record.workflow_version,
            steps=record.steps,
            sealed_envs=record.sealed_envs,
            execution_started=record.execution_started,
        )

    def _counter_updates(self, tenant: str, workflow_id: str, name: str, deltas: dict[Status, int]) -> list[dict]:
        sets = ", ".join(f"#c{i} :d{i}" for i in range(len(deltas)))
        names = {f"#c{i}": status.value for i, status in enumerate(deltas)}
        values = {f":d{i}": _n(delta) for i, delta in enumerate(deltas.values())}
        values[":wf"] = _s(workflow_id)
        values[":name"] = _s(name)
        sort_keys = (keys.COUNTER_ALL_SK, keys.counter_workflow_sk(workflow_id), keys.counter_name_sk(workflow_id, name))
        return [
            {
                "Update": {
                    "TableName": self._runs,
                    "Key": {keys.PK: _s(keys.counters_pk(tenant)), keys.SK: _s(sk)},
                    "UpdateExpression": f"ADD {sets} SET workflowId = :wf, workflowName = :name",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
            for sk in sort_keys
        ]

    def _counter_touch(self, tenant: str, workflow_id: str, name: str) -> dict:
        return {
            "Update": {
                "TableName": self._runs,
                "Key": {keys.PK: _s(keys.counters_pk(tenant)), keys.SK: _s(keys.counter_workflow_sk(workflow_id))},
                "UpdateExpression": "SET workflowId = :wf, workflowName = :name",
                "ExpressionAttributeValues": {":wf": _s(workflow_id), ":name": _s(name)},
            }
        }

    # ---------------------------------------------------------------- activity runs

    def put_activity(self, run_id: str, step_index: int, activity: ActivityRun) -> bool:
        """Write an activity run while its run is not terminal. False when the run ended first."""
        item = _activity_item(run_id, step_index, activity)
        return self._write_while_run_active(run_id, {"Put": {"TableName": self._runs, "Item": item}})

    def finish_activity(
        self, run_id: str, step_index: int, activity: ActivityRun, expected: Iterable[Status]
    ) -> bool:
        """Rewrite an activity run (new status, outputs) conditionally on its old status and
        on its run not being terminal. False when either no longer holds."""
        return self._write_while_run_active(run_id, self._activity_put(run_id, (step_index, activity, expected)))

    def _activity_put(self, run_id: str, write: ActivityWrite) -> dict:
        step_index, activity, expected = write
        put: dict[str, Any] = {"TableName": self._runs, "Item": _activity_item(run_id, step_index, activity)}
        if expected is not None:
            values = {f":e{i}": _s(s.value) for i, s in enumerate(expected)}
            put.update(
                ConditionExpression=f"#st IN ({', '.join(values)})",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues=values,
            )
        return {"Put": put}

    def _write_while_run_active(self, run_id: str, write: dict) -> bool:
        active = {f":a{i}": _s(s.value) for i, s in enumerate(NON_TERMINAL)}
        check = {
            "ConditionCheck": {
                "TableName": self._runs,
                "Key": {keys.PK: _s(keys.run_pk(run_id)), keys.SK: _s(keys.RUN_SK)},
                "ConditionExpression": f"#st IN ({', '.join(active)})",
                "ExpressionAttributeNames": {"#st": "status"},
                "ExpressionAttributeValues": active,
            }
        }
        try:
            self._client.transact_write_items(TransactItems=[check, write])
            return True
        except self._client.exceptions.TransactionCanceledException:
            return False

    def cancel_run(self, record: RunRecord, reason: str | None = None) -> RunRecord:
        return self.end_run(record, Status.CANCELLED, cancel_reason=reason)

    def end_run(
        self,
        record: RunRecord,
        status: Status,
        *,
        error: RunError | None = None,
        cancel_reason: str | None = None,
    ) -> RunRecord:
        """End a run from outside its steps (a cancel, the reconciler) without leaving a step open.

        Three writes, in this order so the stream (and every SSE reader) sees the steps close
        before the run ends: (1) the open activity runs closed, conditional on each old status
        and on the run's; (2) the run's move with its counters; (3) one more read, to close a
        step opened between our read and (2) — after (2) the store refuses new ones. A step
        that finished meanwhile fails (1) or (2): TransitionRejected, the caller reads again.
        """
        closing = Status.CANCELLED if status is Status.CANCELLED else Status.FAILED
        outputs = {"error": error.message} if error is not None else None
        closed = self._close_open_activities(record, closing, outputs, run_status=record.status)
        ended = self.transition_run(record, status, error=error, cancel_reason=cancel_reason)
        self._close_open_activities(self.get_run_record(record.id), closing, outputs, run_status=None)
        ended.run.activity_runs = [closed.get(a.id, a) for a in record.run.activity_runs]
        return ended

    def _close_open_activities(
        self, record: RunRecord, status: Status, outputs: dict | None, *, run_status: Status | None
    ) -> dict[str, ActivityRun]:
        """Close every open activity run of `record` in one transaction. With `run_status`, the
        run must still have it (else TransitionRejected); without, each closes on its own."""
        index_of = {s.id: i for i, s in enumerate(record.steps)}
        now = utc_now()
        closed = {
            a.id: a.model_copy(update={"status": status, "updated_at": now,
                                       "outputs": outputs if outputs is not None else a.outputs})
            for a in record.run.activity_runs
            if a.status not in TERMINAL
        }
        writes = [self._activity_put(record.id, (index_of[a.step_id], closed[a.id], [a.status]))
                  for a in record.run.activity_runs if a.id in closed]
        if run_status is not None and writes:
            check = {
                "ConditionCheck": {
                    "TableName": self._runs,
                    "Key": {keys.PK: _s(keys.run_pk(record.id)), keys.SK: _s(keys.RUN_SK)},
                    "ConditionExpression": "#st = :old",
                    "ExpressionAttributeNames": {"#st": "status"},
                    "ExpressionAttributeValues": {":old": _s(run_status.value)},
                }
            }
            try:
                self._client.transact_write_items(TransactItems=[check, *writes])
            except self._client.exceptions.TransactionCanceledException as exc:
                raise TransitionRejected(f"run {record.id} changed while its steps were closed") from exc
        else:
            for write in writes:
                try:
                    self._client.put_item(**write["Put"])
                except self._client.exceptions.ConditionalCheckFailedException:
                    continue  # the step runner closed it meanwhile
        return closed

    def put_thinking(self, run_id: str, activity_run_id: str, step_id: str, seq: int, text: str) -> None:
        """Reasoning text travels the same road as status changes (the table's stream), so
        one cursor orders everything an SSE client sees."""
        self._client.put_item(
            TableName=self._runs,
            Item={
                keys.PK: _s(keys.run_pk(run_id)),
                keys.SK: _s(keys.thinking_sk(activity_run_id, seq)),
                "activityRunId": _s(activity_run_id),
                "stepId": _s(step_id),
                "content": _s(text),
                keys.TTL_ATTRIBUTE: _n(int(time.time()) + THINKING_TTL_SECONDS),
            },
        )

    # ---------------------------------------------------------------- runs: reads

    def get_run_record(self, run_id: str, tenant: str | None = None) -> RunRecord:
        """The run and all its activity runs in one Query. Another tenant's run is NotFound."""
        items = list(
            self._query_all(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :r)",
                ExpressionAttributeValues={":pk": _s(keys.run_pk(run_id)), ":r": _s(keys.RUN_SK)},
                ConsistentRead=True,
            )
        )
        head = next((_plain(i) for i in items if i[keys.SK]["S"] == keys.RUN_SK), None)
        if head is None or (tenant is not None and head["tenant"] != tenant):
            raise NotFound(f"workflow run {run_id} not found")
        steps = [Step.model_validate(s) for s in json.loads(head["steps"])]
        order = {s.id: i for i, s in enumerate(steps)}
        activities = [_activity_from(_plain(i)) for i in items if i[keys.SK]["S"].startswith(keys.ACTIVITY_SK_PREFIX)]
        activities.sort(key=lambda a: (a.created_at, order.get(a.step_id, 0), a.attempt))
        run = WorkflowRun(
            **_summary_fields(head),
            activity_runs=activities,
            error=RunError.model_validate(json.loads(head["error"])) if head.get("error") else None,
            cancel_reason=head.get("cancelReason"),
        )
        return RunRecord(
            run=run,
            tenant=head["tenant"],
            workflow_version=head["workflowVersion"],
            steps=steps,
            sealed_envs=head.get("envs"),
            execution_started=bool(head.get("executionStarted")),
        )

    def get_run(self, tenant: str, run_id: str) -> WorkflowRun:
        return self.get_run_record(run_id, tenant).run

    def run_status(self, run_id: str) -> Status | None:
        item = self._client.get_item(
            TableName=self._runs,
            Key={keys.PK: _s(keys.run_pk(run_id)), keys.SK: _s(keys.RUN_SK)},
            ProjectionExpression="#st",
            ExpressionAttributeNames={"#st": "status"},
            ConsistentRead=True,
        ).get("Item")
        return Status(item["status"]["S"]) if item else None

    def run_state(self, run_id: str) -> tuple[Status, str] | None:
        """The run's status and when it last changed (one consistent GetItem), or None."""
        item = self._client.get_item(
            TableName=self._runs,
            Key={keys.PK: _s(keys.run_pk(run_id)), keys.SK: _s(keys.RUN_SK)},
            ProjectionExpression="#st, updatedAt",
            ExpressionAttributeNames={"#st": "status"},
            ConsistentRead=True,
        ).get("Item")
        return (Status(item["status"]["S"]), item["updatedAt"]["S"]) if item else None

    def counts(self, tenant: str, workflow_id: str) -> dict[str, int]:
        """Every status of a workflow's runs, from its kept counter: one GetItem.
        The counter exists from the workflow's creation on, so a missing one is NotFound."""
        item = self._client.get_item(
            TableName=self._runs,
            Key={keys.PK: _s(keys.counters_pk(tenant)), keys.SK: _s(keys.counter_workflow_sk(workflow_id))},
        ).get("Item")
        if not item:
            raise NotFound(f"workflow {workflow_id} not found")
        return _counts_of(_plain(item))

    def list_runs(
        self,
        tenant: str,
        *,
        workflow_id: str | None = None,
        status: Status | None = None,
        search: str | None = None,
        page: int = 1,
        limit: int = 10,
    ) -> Page:
        """Newest first with an exact total: one Query plus one counter read (search: one
        Query of the tenant's name counters, then one Query per matching name partition)."""
        wanted = page * limit
        if search:
            return self._search_runs(tenant, workflow_id, status, search, page, limit)
        if workflow_id:
            index = keys.GSI_WORKFLOW_STATUS if status else keys.GSI_WORKFLOW
            counter_sk = keys.counter_workflow_sk(workflow_id)
        else:
            index = keys.GSI_STATUS if status else keys.GSI_TENANT
            counter_sk = keys.COUNTER_ALL_SK
        partition = keys.run_index_keys(tenant, workflow_id or "", "", status.value if status else "")[
            keys.INDEX_PARTITION_KEYS[index]
        ]
        rows = self._index_newest(index, partition, wanted)
        counter = self._client.get_item(
            TableName=self._runs, Key={keys.PK: _s(keys.counters_pk(tenant)), keys.SK: _s(counter_sk)}
        ).get("Item")
        counts = _counts_of(_plain(counter) if counter else {})
        total = counts[status.value] if status else sum(counts.values())
        return Page(items=[_summary_from(r) for r in rows[(page - 1) * limit : wanted]], total=total)

    def _search_runs(
        self, tenant: str, workflow_id: str | None, status: Status | None, search: str, page: int, limit: int
    ) -> Page:
        needle = search.casefold()
        name_counters = [
            _plain(i)
            for i in self._query_all(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :n)",
                ExpressionAttributeValues={
                    ":pk": _s(keys.counters_pk(tenant)),
                    ":n": _s(keys.COUNTER_NAME_SK_PREFIX + (f"{workflow_id}#" if workflow_id else "")),
                },
            )
        ]
        matches = [c for c in name_counters if needle in c["workflowName"].casefold()]
        total = 0
        rows: list[dict[str, Any]] = []
        wanted = page * limit
        index = keys.GSI_NAME_STATUS if status else keys.GSI_NAME
        for counter in matches:
            counts = _counts_of(counter)
            total += counts[status.value] if status else sum(counts.values())
            partition = keys.run_index_keys(
                tenant, counter["workflowId"], counter["workflowName"], status.value if status else ""
            )[keys.INDEX_PARTITION_KEYS[index]]
            rows.extend(self._index_newest(index, partition, wanted))
        rows.sort(key=lambda r: r[keys.GSK], reverse=True)
        return Page(items=[_summary_from(r) for r in rows[(page - 1) * limit : wanted]], total=total)

    def _index_newest(self, index: str, partition: str, wanted: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self._runs,
            "IndexName": index,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": keys.INDEX_PARTITION_KEYS[index]},
            "ExpressionAttributeValues": {":pk": _s(partition)},
            "ScanIndexForward": False,
            "Limit": wanted,
        }
        while len(rows) < wanted:
            response = self._client.query(**request)
            rows.extend(_plain(i) for i in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            request["Limit"] = wanted - len(rows)
        return rows[:wanted]

    def non_terminal_run_ids(self, tenant: str, workflow_id: str) -> list[str]:
        """Every run of a workflow that has not ended, from the status indexes (Query, no Scan)."""
        ids: list[str] = []
        for status in NON_TERMINAL:
            partition = keys.run_index_keys(tenant, workflow_id, "", status.value)[
                keys.INDEX_PARTITION_KEYS[keys.GSI_WORKFLOW_STATUS]
            ]
            ids.extend(r["id"] for r in self._index_newest(keys.GSI_WORKFLOW_STATUS, partition, 10_000))
        return ids

    def stale_run_ids(self, created_before: str, limit: int = 500) -> list[str]:
        """Runs not yet terminal and created before a cutoff, for the reconciler's sweep."""
        index = keys.GSI_ACTIVE
        ids: list[str] = []
        for shard in range(keys.ACTIVE_SHARDS):
            response = self._client.query(
                TableName=self._runs,
                IndexName=index,
                KeyConditionExpression="#pk = :pk AND GSK < :cut",
                ExpressionAttributeNames={"#pk": keys.INDEX_PARTITION_KEYS[index]},
                ExpressionAttributeValues={":pk": _s(f"ACTIVE#{shard}"), ":cut": _s(created_before)},
                Limit=limit,
            )
            ids.extend(_plain(i)["id"] for i in response.get("Items", []))
        return ids

    # ---------------------------------------------------------------- event log

    def put_event(self, run_id: str, cursor: str, name: str, data: dict[str, Any]) -> None:
        """Idempotent: a redelivered stream record rewrites the same event under the same cursor."""
        self._client.put_item(
            TableName=self._events,
            Item={
                keys.PK: _s(keys.run_pk(run_id)),
                keys.SK: _s(cursor),
                "event": _s(name),
                "data": _json(data),
                keys.TTL_ATTRIBUTE: _n(int(time.time()) + self._event_ttl),
            },
        )

    def events_after(self, run_id: str, cursor: str | None, limit: int = 100) -> list[tuple[str, str, dict]]:
        """Events of a run after `cursor`, oldest first, read consistently."""
        condition = "PK = :pk AND SK > :c" if cursor else "PK = :pk"
        values = {":pk": _s(keys.run_pk(run_id))}
        if cursor:
            values[":c"] = _s(cursor)
        response = self._client.query(
            TableName=self._events,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
            Limit=limit,
        )
        return [(i[keys.SK]["S"], i["event"]["S"], json.loads(i["data"]["S"])) for i in response.get("Items", [])]

    # ---------------------------------------------------------------- helpers

    def _query_all(self, **request: Any) -> Iterable[dict]:
        request.setdefault("TableName", self._runs)
        while True:
            response = self._client.query(**request)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _counts_of(item: dict[str, Any]) -> dict[str, int]:
    return {s.value: int(item.get(s.value, 0) or 0) for s in Status}


def _summary_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "workflow_id": row["workflowId"],
        "workflow_name": row.get("workflowName"),
        "status": Status(row["status"]),
        "inputs": [RunInput.model_validate(i) for i in json.loads(row.get("inputs") or "[]")],
        "created_at": row["createdAt"],
        "updated_at": row["updatedAt"],
    }


def _summary_from(row: dict[str, Any]) -> WorkflowRunSummary:
    return WorkflowRunSummary(**_summary_fields(row))


def _workflow_from(row: dict[str, Any]) -> Workflow:
    definition = json.loads(row["definition"])
    return Workflow.model_validate(
        {**definition, "id": row["id"], "version": row["version"], "createdAt": row["createdAt"], "updatedAt": row["updatedAt"]}
    )


def _activity_item(run_id: str, step_index: int, activity: ActivityRun) -> dict:
    item = {
        keys.PK: _s(keys.run_pk(run_id)),
        keys.SK: _s(keys.activity_sk(step_index, activity.attempt)),
        "id": _s(activity.id),
        "stepId": _s(activity.step_id),
        "status": _s(activity.status.value),
        "attempt": _n(activity.attempt),
        "createdAt": _s(activity.created_at),
        "updatedAt": _s(activity.updated_at),
    }
    if activity.step_name is not None:
        item["stepName"] = _s(activity.step_name)
    if activity.outputs is not None:
        item["outputs"] = _json(activity.outputs)
    return item


def _activity_from(row: dict[str, Any]) -> ActivityRun:
    return ActivityRun(
        id=row["id"],
        step_id=row["stepId"],
        step_name=row.get("stepName"),
        status=Status(row["status"]),
        outputs=json.loads(row["outputs"]) if row.get("outputs") else None,
        attempt=row["attempt"],
        created_at=row["createdAt"],
        updated_at=row["updatedAt"],
    )
