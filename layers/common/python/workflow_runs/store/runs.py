"""Run writes: creating a run, moving its status with its counters, opening and closing
its steps. Every status change is one transaction, conditional on the old status, that
moves the run's counter shards with it: a transition happens once and counts stay exact.
A conflict or a throttle is retried by `Dynamo.transact`; only a failed condition is a
`TransitionRejected` (someone else moved the run)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from typing import Any

from .. import keys, telemetry
from ..errors import Conflict, TransitionRejected
from ..marshal import js, key, n, plain, s
from ..models import NON_TERMINAL, TERMINAL, ActivityRun, RunError, Status, WorkflowRun, can_transition, utc_now
from .dynamo import ConditionFailed
from .queries import RunQueries
from .records import ActivityWrite, NewRun, RunRecord

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
THINKING_TTL_SECONDS = 24 * 3600


class RunWrites(RunQueries):
    def create_run(self, new: NewRun) -> tuple[RunRecord, bool]:
        """Write a scheduled run and count it. Returns (record, created).

        With an idempotency key, the key is claimed in the same transaction: a repeat with
        the same request returns the first run (created=False); a different request → Conflict.
        """
        try:
            self.db.transact(self.creation_writes(new))
        except ConditionFailed:
            if new.idempotency_key:
                return self._replay_idempotent(new), False
            raise
        return self._created_record(new), True

    def creation_writes(self, new: NewRun) -> list[dict[str, Any]]:
        """The one transaction that creates a run: its head (conditional on not existing), its
        sealed envs, its counters and its idempotency claim, in that order."""
        wf = new.workflow
        status = Status.SCHEDULED
        head = {
            **key(keys.run_pk(new.run_id), keys.RUN_SK),
            keys.GSK: s(f"{new.created_at}#{new.run_id}"),
            "id": s(new.run_id),
            "tenant": s(new.tenant),
            "workflowId": s(wf.id),
            "workflowName": s(wf.name),
            "workflowVersion": n(wf.version),
            "status": s(status.value),
            "inputs": js([i.dump() for i in new.inputs]),
            "createdAt": s(new.created_at),
            "updatedAt": s(new.created_at),
            "stepSeq": n(0),
            # Set once here, so the run class costs no write of its own.
            "orchestration": s(new.orchestration),
            **({"retryOf": s(new.retry_of)} if new.retry_of else {}),
            keys.ACTIVE.partition: s(keys.active_partition(keys.shard_of(new.run_id, keys.ACTIVE_SHARDS))),
            **{k: s(v) for k, v in keys.run_index_keys(new.tenant, new.run_id, wf.id, wf.name, status.value).items()},
        }
        writes: list[dict[str, Any]] = [
            {"Put": {"TableName": self.runs_table, "Item": head, "ConditionExpression": "attribute_not_exists(PK)"}}
        ]
        if new.sealed_envs:
            envs = {**key(keys.run_pk(new.run_id), keys.ENVS_SK), "envs": s(new.sealed_envs)}
            if new.sealed_for and new.sealed_for != new.run_id:
                envs["sealedFor"] = s(new.sealed_for)
            writes.append({"Put": {"TableName": self.runs_table, "Item": envs}})
        writes += self._counter_writes(new.tenant, new.run_id, wf.id, wf.name, {status: 1})
        if new.idempotency_key:
            claim = {
                **key(keys.idempotency_pk(new.tenant, new.idempotency_key), keys.IDEMPOTENCY_SK),
                "runId": s(new.run_id),
                "requestHash": s(new.request_hash or ""),
                keys.TTL_ATTRIBUTE: n(int(time.time()) + IDEMPOTENCY_TTL_SECONDS),
            }
            writes.append(
                {"Put": {"TableName": self.runs_table, "Item": claim, "ConditionExpression": "attribute_not_exists(PK)"}}
            )
        return writes

    @staticmethod
    def _created_record(new: NewRun) -> RunRecord:
        wf = new.workflow
        run = WorkflowRun(id=new.run_id, workflow_id=wf.id, workflow_name=wf.name, status=Status.SCHEDULED,
                          inputs=new.inputs, created_at=new.created_at, updated_at=new.created_at,
                          orchestration=new.orchestration, retry_of=new.retry_of)
        return RunRecord(run=run, tenant=new.tenant, workflow_version=wf.version, steps=list(wf.steps),
                         sealed_envs=new.sealed_envs, sealed_for=new.sealed_for)

    def _replay_idempotent(self, new: NewRun) -> RunRecord:
        claim = self.db.get(
            TableName=self.runs_table,
            Key=key(keys.idempotency_pk(new.tenant, new.idempotency_key or ""), keys.IDEMPOTENCY_SK),
            ConsistentRead=True,
        )
        if not claim:
            raise Conflict("the Idempotency-Key is being used by a concurrent request; try again")
        found = plain(claim)
        if found["requestHash"] != (new.request_hash or ""):
            raise Conflict("this Idempotency-Key was used with a different request body")
        return self.get_run_record(found["runId"])

    # ------------------------------------------------------------------ status

    def transition_run(
        self,
        record: RunRecord,
        new: Status,
        *,
        error: RunError | None = None,
        cancel_reason: str | None = None,
        activities: Sequence[ActivityWrite] = (),
        fenced: bool = False,
        also: Sequence[dict[str, Any]] = (),
    ) -> RunRecord:
        """Move a run from its current status to `new`, with its counters, exactly once;
        a terminal `new` is counted as RunsEnded{Status,RunClass} here, once per run.

        `activities` ride in the same transaction (a step's start with the run's move to
        running), so readers never see one without the other. `fenced` also requires that
        no step opened since `record` was read (ending a run from outside). `also`: more
        transaction items of the same move (an approval's token or decision).
        Raises TransitionRejected when the stored status is no longer the one we read (or
        the move is not allowed, or an activity's own condition failed): the caller lost a
        race and must not act on the old state.
        """
        old = record.status
        if not can_transition(old, new):
            raise TransitionRejected(f"{old.value} → {new.value} is not allowed")
        run = record.run
        now = utc_now()
        names = {"#st": "status"}
        values: dict[str, Any] = {":new": s(new.value), ":old": s(old.value), ":now": s(now)}
        sets = ["#st = :new", "updatedAt = :now"]
        index_keys = keys.run_index_keys(record.tenant, run.id, run.workflow_id, run.workflow_name or "", new.value)
        for index in keys.STATUS_INDEXES:
            sets.append(f"{index.partition} = :{index.partition}")
            values[f":{index.partition}"] = s(index_keys[index.partition])
        if error is not None:
            sets.append("#err = :err")
            names["#err"] = "error"
            values[":err"] = js(error.dump())
        if cancel_reason is not None:
            sets.append("cancelReason = :reason")
            values[":reason"] = s(cancel_reason)
        if new in TERMINAL:
            # Retention starts when the run ends: DynamoDB's TTL deletes the head, and the
            # projector, seeing that on the stream, moves the counters and deletes the rest.
            sets.append(f"{keys.TTL_ATTRIBUTE} = :expires")
            values[":expires"] = n(int(time.time()) + self.retention_seconds)
        expression = "SET " + ", ".join(sets)
        opens = sum(1 for _, _, expected in activities if expected is None)
        if opens:
            expression += " ADD stepSeq :opens"
            values[":opens"] = n(opens)
        if new in TERMINAL:
            expression += " REMOVE " + keys.ACTIVE.partition
        condition = "#st = :old"
        if fenced:
            condition += " AND stepSeq = :seq"
            values[":seq"] = n(record.step_seq)
        writes = [
            {
                "Update": {
                    "TableName": self.runs_table,
                    "Key": key(keys.run_pk(run.id), keys.RUN_SK),
                    "UpdateExpression": expression,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            },
            *self._counter_writes(record.tenant, run.id, run.workflow_id, run.workflow_name or "", {new: 1, old: -1}),
            *(self._activity_put(run.id, write) for write in activities),
            *also,
        ]
        try:
            self.db.transact(writes)
        except ConditionFailed as exc:
            raise TransitionRejected(f"run {run.id} is no longer {old.value}") from exc
        if new in TERMINAL:
            # The one place a run's end is written, so the one place it is counted (a no-op
            # outside an instrumented Lambda invocation).
            telemetry.run_ended(new.value, run.orchestration)
        updated = run.model_copy(
            update={
                "status": new,
                "updated_at": now,
                "error": error if error is not None else run.error,
                "cancel_reason": cancel_reason if cancel_reason is not None else run.cancel_reason,
            }
        )
        return RunRecord(run=updated, tenant=record.tenant, workflow_version=record.workflow_version,
                         steps=record.steps, sealed_envs=record.sealed_envs, step_seq=record.step_seq + opens,
                         sealed_for=record.sealed_for)

    def _counter_writes(
        self, tenant: str, run_id: str, workflow_id: str, name: str, deltas: dict[Status, int]
    ) -> list[dict[str, Any]]:
        """One item: the shard of the run's workflow its id picks, counting the workflow and
        the run's series at once (tenant totals are summed from the workflows')."""
        shard = keys.shard_of(run_id, keys.COUNTER_SHARDS)
        adds, names, values = [], {}, {}
        for i, (status, delta) in enumerate(deltas.items()):
            names[f"#c{i}"], names[f"#n{i}"] = status.value, keys.series_count(name, status.value)
            values[f":d{i}"] = n(delta)
            adds += [f"#c{i} :d{i}", f"#n{i} :d{i}"]
        return [
            {
                "Update": {
                    "TableName": self.runs_table,
                    "Key": key(keys.counter_pk(tenant, workflow_id, shard), keys.COUNTER_SK),
                    "UpdateExpression": "ADD " + ", ".join(adds),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        ]

    # ------------------------------------------------------------------ activity runs

    def put_activity(self, run_id: str, step_index: int, activity: ActivityRun, *, one_request: bool = False) -> bool:
        """Open a step of a run that is not terminal, counting it on the run (the fence an
        ending from outside checks). False when the run ended first, or when this attempt
        of the step is open already: a second delivery of the same invocation (Express runs
        at least once) loses here and must not run the step.

        Two plain conditional writes, not a transaction (a transaction bills each item
        twice): the attempt first (it opens once), then the run's step count, conditional
        on the run not having ended. An ending from outside that read the run before the
        attempt existed is fenced by the count (its own write then fails and it reads
        again); one that ended the run before the count moved makes the count fail, and the
        attempt is taken back here (deleted while still ours, `running`): it never ran.

        `one_request`: both in one transaction instead (one round trip, twice the units),
        for a run's last step, whose end adds a write of its own to the step's."""
        active = {f":a{i}": s(st.value) for i, st in enumerate(NON_TERMINAL)}
        bump = {
            "TableName": self.runs_table,
            "Key": key(keys.run_pk(run_id), keys.RUN_SK),
            "UpdateExpression": "ADD stepSeq :one",
            "ConditionExpression": f"#st IN ({', '.join(active)})",
            "ExpressionAttributeNames": {"#st": "status"},
            "ExpressionAttributeValues": {**active, ":one": n(1)},
        }
        put = self._activity_put(run_id, (step_index, activity, None))
        if one_request:
            try:
                self.db.transact([{"Update": bump}, put])
                return True
            except ConditionFailed:
                return False
        try:
            self.db.put(**put["Put"])
        except ConditionFailed:
            return False
        try:
            self.db.update(**bump)
            return True
        except ConditionFailed:
            with suppress(ConditionFailed):  # closed meanwhile by the ending: it stays, closed
                self.db.delete(
                    TableName=self.runs_table,
                    Key=key(keys.run_pk(run_id), keys.activity_sk(step_index, activity.attempt)),
                    ConditionExpression="#st = :open",
                    ExpressionAttributeNames={"#st": "status"},
                    ExpressionAttributeValues={":open": s(activity.status.value)},
                )
            return False

    def finish_activity(
        self, run_id: str, step_index: int, activity: ActivityRun, expected: Iterable[Status]
    ) -> bool:
        """Rewrite an activity run (new status, outputs) conditionally on its old status.
        False when it no longer has it: the step was closed from outside (a cancel closes a
        run's open steps before it ends the run) or by another invocation."""
        try:
            self.db.put(**self._activity_put(run_id, (step_index, activity, expected))["Put"])
            return True
        except ConditionFailed:
            return False

    def _activity_put(self, run_id: str, write: ActivityWrite) -> dict[str, Any]:
        step_index, activity, expected = write
        put: dict[str, Any] = {"TableName": self.runs_table, "Item": activity_item(run_id, step_index, activity)}
        if expected is None:
            # An attempt opens once: its id and key are deterministic, so a repeated delivery
            # would otherwise overwrite it and run the step again.
            put["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            values = {f":e{i}": s(st.value) for i, st in enumerate(expected)}
            put.update(
                ConditionExpression=f"#st IN ({', '.join(values)})",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues=values,
            )
        return {"Put": put}

    # ------------------------------------------------------------------ ending from outside

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

        Two writes, in this order so the stream (and every SSE reader) sees the steps close
        before the run ends: (1) the open activity runs closed, conditional on each old
        status and on the run's status and step count; (2) the run's move with its
        counters, conditional on the same. A step that opened or finished meanwhile fails
        (1) or (2): TransitionRejected, and the caller reads again (workflow_runs.ending).
        """
        closing = Status.CANCELLED if status is Status.CANCELLED else Status.FAILED
        outputs = {"error": error.message} if error is not None else None
        closed = self._close_open_activities(record, closing, outputs)
        ended = self.transition_run(record, status, error=error, cancel_reason=cancel_reason, fenced=True)
        return ended.with_activities([closed.get(a.id, a) for a in record.run.activity_runs])

    def _close_open_activities(self, record: RunRecord, status: Status, outputs: dict | None) -> dict[str, ActivityRun]:
        index_of = {st.id: i for i, st in enumerate(record.steps)}
        now = utc_now()
        closed = {
            a.id: a.model_copy(update={"status": status, "updated_at": now,
                                       "outputs": outputs if outputs is not None else a.outputs})
            for a in record.run.activity_runs
            if a.status not in TERMINAL
        }
        if not closed:
            return closed
        check = {
            "ConditionCheck": {
                "TableName": self.runs_table,
                "Key": key(keys.run_pk(record.id), keys.RUN_SK),
                "ConditionExpression": "#st = :old AND stepSeq = :seq",
                "ExpressionAttributeNames": {"#st": "status"},
                "ExpressionAttributeValues": {":old": s(record.status.value), ":seq": n(record.step_seq)},
            }
        }
        writes = [self._activity_put(record.id, (index_of[a.step_id], closed[a.id], [a.status]))
                  for a in record.run.activity_runs if a.id in closed]
        try:
            self.db.transact([check, *writes])
        except ConditionFailed as exc:
            raise TransitionRejected(f"run {record.id} changed while its steps were closed") from exc
        return closed

    # ------------------------------------------------------------------ thinking

    def put_thinking(self, run_id: str, activity_run_id: str, step_id: str, seq: int, text: str) -> None:
        """Reasoning text travels the same road as status changes (the table's stream), so
        one cursor orders everything an SSE client sees."""
        self.db.put(
            TableName=self.runs_table,
            Item={
                **key(keys.run_pk(run_id), keys.thinking_sk(activity_run_id, seq)),
                "activityRunId": s(activity_run_id),
                "stepId": s(step_id),
                "content": s(text),
                keys.TTL_ATTRIBUTE: n(int(time.time()) + THINKING_TTL_SECONDS),
            },
        )


def activity_item(run_id: str, step_index: int, activity: ActivityRun) -> dict[str, Any]:
    item: dict[str, Any] = {
        **key(keys.run_pk(run_id), keys.activity_sk(step_index, activity.attempt)),
        "id": s(activity.id),
        "stepId": s(activity.step_id),
        "status": s(activity.status.value),
        "attempt": n(activity.attempt),
        "createdAt": s(activity.created_at),
        "updatedAt": s(activity.updated_at),
    }
    if activity.step_name is not None:
        item["stepName"] = s(activity.step_name)
    if activity.outputs is not None:
        item["outputs"] = js(activity.outputs)
    if activity.reused:
        item["reused"] = {"BOOL": True}
    return item
