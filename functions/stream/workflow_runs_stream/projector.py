"""The projector: the runs table's DynamoDB stream → each run's event log.

Lambda entry point `handler` (event source mapping with `ReportBatchItemFailures`). Each
stream record becomes zero or more events (built by `workflow_runs.events`, their one
schema), written with `RunStore.put_event` under cursors derived from the record (see
`cursors`), so a redelivered record rewrites the same events:

  run item INSERT, or its status changed  → `workflow-run`  {"content": {workflowRunId, status}}
    … and, when that status is terminal, in the same record, the one closing event:
      completed → `result` {"success": true, "workflowRun": <the run as GET returns it>}
      failed / cancelled → `error` {"error": <message>, "details": {workflowRunId, status, stepId}}
  activity item INSERT, or its status changed → `activity-run`
      {"content": {workflowRunId, activityRunId, stepId, status, attempt}}, and when it waits its
      outputs (an approval's {"prompt"}, a wait step's {"seconds"})
  thinking chunk INSERT → `thinking` {"content": <text>, "stepId", "activityRunId"}
  run item REMOVE (the TTL deleted an ended run) → no event: the run's counters move and its
      other items are deleted (`RunStore.expire_run`, exactly once per run)
  anything else (workflows, counters, idempotency claims, other REMOVEs) → nothing.

Failures, without ever blocking the shard:
- a record the projector cannot read (`PoisonRecord`) fails alone; the other records of
  the batch are projected, and the poisoned one is reported in `batchItemFailures`;
- any other failure (a throttled or failed write) is transient: later records of the
  SAME run in the batch are held back (reported as failures too, not projected), because an
  SSE reader that has already read past a later cursor would never see the missing event.
  The event source mapping retries from the lowest failed sequence number, so held-back
  records come back in order; records of other runs are projected meanwhile.

Imports are lazy: the module loads in a few milliseconds; Powertools and the store (boto3,
pydantic) load on the first invocation, which needs them anyway.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from workflow_runs import events as events_schema
from workflow_runs import keys, telemetry
from workflow_runs.events import EventData
from workflow_runs.lambda_entry import LambdaEntry
from workflow_runs.marshal import NotDynamoJson, plain
from workflow_runs.states import CLOSING_EVENTS, STATUS_VALUES, TERMINAL_VALUES, Status

from .cursors import event_cursor

if TYPE_CHECKING:  # pragma: no cover
    from workflow_runs.store import RunStore
    from workflow_runs.store.ports import ProjectorStore

logger = logging.getLogger("workflow_runs.stream.projector")

RUN_PK_PREFIX = keys.run_pk("")
# Who a TTL deletion comes from, on the stream record (`userIdentity`, type "Service").
TTL_PRINCIPAL = "dynamodb.amazonaws.com"
# The models' statuses, as the strings the items carry (models imports pydantic: kept lazy).
STATUSES = STATUS_VALUES
TERMINAL = TERMINAL_VALUES


class PoisonRecord(ValueError):
    """A record the projector cannot interpret: retrying it will not help."""


class HeldBack(RuntimeError):
    """Not projected: an earlier record of the same run failed in this batch."""


@dataclass(frozen=True)
class Event:
    run_id: str
    cursor: str
    name: str
    data: EventData


# ------------------------------------------------------------------ Lambda entry point


def handler(event: dict[str, Any], context: Any, *, store: ProjectorStore | None = None) -> dict[str, Any]:
    """Project one batch; answer the partial batch response the event source mapping reads.
    In Lambda (no `store` given): with the function's Powertools Logger, Tracer and Metrics
    (ProjectionLag per projected record). The dev server's poller passes its store and
    calls the projection directly."""
    if store is None:
        return entry.handler(event, context)
    return project_batch(event, context, store=store)


def _in_lambda(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return project_batch(event, context, store=_default_store(), lag=telemetry.projection_lag)


entry = LambdaEntry(telemetry.PROJECTOR, _in_lambda)


def project_batch(event: dict[str, Any], context: Any, *, store: ProjectorStore,
                  lag: Callable[[float], None] | None = None) -> dict[str, Any]:
    """One batch through Powertools' batch processor. `lag(ms)` hears, for each record
    projected, how long after its change reached the stream (ApproximateCreationDateTime)."""
    if not event.get("Records"):
        return {"batchItemFailures": []}  # Powertools refuses an empty batch; nothing to do
    from aws_lambda_powertools.utilities.batch import (  # deferred: cold start
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    # A processor per batch: it carries the batch's results, and the poller may call us
    # from its own thread.
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
    return process_partial_response(  # type: ignore[return-value]  # a TypedDict of that shape
        event={**event, "Records": terminal_records_last(event["Records"])},
        record_handler=_record_handler(store, lag),
        processor=processor,
        context=context,
    )


def terminal_records_last(records: list[dict]) -> list[dict]:
    """Each run's terminal status change after the run's other records of the batch.

    The store already writes a run's end after its steps' closes (`RunStore.end_run`, the
    runner's last step), so the stream carries them in that order; this keeps the promise
    within a batch whatever else arrives with it. Writing the terminal record's events (the
    `~` cursors that end every stream) last means an SSE reader that receives the closing
    event has already been able to read everything before it. Failures are still reported
    by sequence number, so the event source mapping retries the right records.
    """
    terminal_ids = {id(r) for r in records if _is_terminal_run_change(r)}
    return [r for r in records if id(r) not in terminal_ids] + [r for r in records if id(r) in terminal_ids]


def _is_terminal_run_change(raw: Any) -> bool:
    stream = raw.get("dynamodb") if isinstance(raw, dict) else None
    if not isinstance(stream, dict) or _string_key(stream, keys.SK) != keys.RUN_SK:
        return False
    new = (stream.get("NewImage") or {}).get("status") or {}
    old = (stream.get("OldImage") or {}).get("status") or {}
    return isinstance(new, dict) and new.get("S") in TERMINAL and new != old


def _record_handler(store: ProjectorStore, lag: Callable[[float], None] | None = None) -> Callable[[Any], list[Event]]:
    stalled: set[str] = set()  # runs with a transient failure earlier in this batch

    def project_in_order(record: Any) -> list[Event]:
        raw = _raw(record)
        run_id = _run_id_of(raw)
        sequence = (raw.get("dynamodb") or {}).get("SequenceNumber")
        if run_id is not None and run_id in stalled:
            logger.info("record held back behind a failed one", extra={"run_id": run_id, "sequence": sequence})
            raise HeldBack(f"an earlier record of run {run_id} failed in this batch")
        try:
            events = project(raw, store)
        except PoisonRecord as exc:
            logger.error("poisoned stream record", extra={"run_id": run_id, "sequence": sequence, "reason": str(exc)})
            raise
        except Exception:
            logger.exception("projecting a stream record failed", extra={"run_id": run_id, "sequence": sequence})
            if run_id is not None:
                stalled.add(run_id)
            raise
        created = (raw.get("dynamodb") or {}).get("ApproximateCreationDateTime")
        if lag is not None and events and isinstance(created, (int, float)) and not isinstance(created, bool):
            lag(max(0.0, time.time() - float(created)) * 1000)
        return events

    return project_in_order


@lru_cache(maxsize=1)
def _default_store() -> RunStore:
    from workflow_runs.settings import get_settings
    from workflow_runs.store import RunStore

    return RunStore(get_settings())


# ------------------------------------------------------------------ one record


def project(record: Any, store: ProjectorStore) -> list[Event]:
    """Write the events of one stream record (a Lambda-shaped dict or a Powertools record)."""
    events = plan(record, store)
    for event in events:
        store.put_event(event.run_id, event.cursor, event.name, event.data)
    return events


def plan(record: Any, store: ProjectorStore) -> list[Event]:
    """The events a record stands for, without writing them. Reads the store only to put
    the whole run into a `result`."""
    raw = _raw(record)
    stream = raw.get("dynamodb")
    if not isinstance(stream, dict):
        raise PoisonRecord("no dynamodb section")
    run_id = _run_id_of(raw)
    sort_key = _string_key(stream, keys.SK)
    if run_id is None or sort_key is None:
        return []  # a workflow, a counter, an idempotency claim: not a run's
    name = raw.get("eventName")
    if name == "REMOVE":
        if sort_key == keys.RUN_SK:
            _expire(run_id, raw, stream, store)
        return []  # TTL deletes of thinking chunks, of markers, and the run's own items after it expired
    if name not in ("INSERT", "MODIFY"):
        raise PoisonRecord(f"unknown eventName {name!r}")
    sequence = str(stream.get("SequenceNumber") or "")
    try:
        event_cursor(sequence, 0)
    except ValueError as exc:
        raise PoisonRecord(str(exc)) from None
    new = _image(stream.get("NewImage"))
    if not new:
        raise PoisonRecord("no NewImage: the stream must be NEW_AND_OLD_IMAGES")
    old = _image(stream.get("OldImage")) if name == "MODIFY" else {}

    if sort_key == keys.RUN_SK:
        planned = _run_events(run_id, new, old, store)
    elif sort_key.startswith(keys.ACTIVITY_SK_PREFIX):
        planned = _activity_events(run_id, new, old)
    elif sort_key.startswith(keys.THINKING_SK_PREFIX):
        planned = _thinking_events(new) if name == "INSERT" else []
    else:
        planned = []
    terminal = any(event_name in CLOSING_EVENTS for event_name, _ in planned)
    return [
        Event(run_id, event_cursor(sequence, index, terminal=terminal), event_name, data)
        for index, (event_name, data) in enumerate(planned)
    ]


def _expire(run_id: str, raw: dict, stream: dict, store: ProjectorStore) -> None:
    """The run's head is gone: DynamoDB's TTL deleted it (RUN_RETENTION_DAYS after it ended;
    the record's `userIdentity` is then the DynamoDB service). Its counters move, once,
    and its other items go (store/retention.py). Nothing is told to the run's event log."""
    head = _image(stream.get("OldImage"))
    if not head:
        raise PoisonRecord("a removed run without OldImage: the stream must be NEW_AND_OLD_IMAGES")
    _status(head)
    identity = raw.get("userIdentity") or {}
    moved = store.expire_run(run_id, head)
    logger.info("run expired", extra={"run_id": run_id, "status": head.get("status"), "counted": moved,
                                      "by_ttl": identity.get("principalId") == TTL_PRINCIPAL})


def _run_events(run_id: str, new: dict, old: dict, store: ProjectorStore) -> list[tuple[str, EventData]]:
    status = _status(new)
    if old and old.get("status") == status:
        return []  # another attribute changed (executionStarted, …): nothing to tell
    events: list[tuple[str, EventData]] = [events_schema.run_event(run_id, status)]
    if status == Status.COMPLETED.value:
        events.append(events_schema.result_event(store.get_run(str(new.get("tenant")), run_id).dump()))
    elif status in TERMINAL:
        error = _json_attribute(new, "error") or {}
        error = error if isinstance(error, dict) else {}
        events.append(events_schema.end_error_event(run_id, status, error.get("message"), error.get("stepId")))
    return events


def _activity_events(run_id: str, new: dict, old: dict) -> list[tuple[str, EventData]]:
    status = _status(new)
    if old and old.get("status") == status:
        return []
    try:
        ids = str(new["id"]), str(new["stepId"]), int(new["attempt"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PoisonRecord(f"activity item without {exc}") from None
    # What a waiting step waits for: an approval's {"prompt"}, a wait step's {"seconds"} (masked).
    outputs = _json_attribute(new, "outputs") if status == Status.WAITING.value else None
    return [events_schema.activity_event(run_id, *ids[:2], status, ids[2],
                                         outputs if isinstance(outputs, dict) else None)]


def _thinking_events(new: dict) -> list[tuple[str, EventData]]:
    content = new.get("content")
    if not isinstance(content, str):
        raise PoisonRecord("thinking item without content")
    return [events_schema.thinking_event(content, new.get("stepId"), new.get("activityRunId"))]


# ------------------------------------------------------------------ record plumbing


def _raw(record: Any) -> dict:
    raw = getattr(record, "raw_event", record)  # Powertools' DynamoDBRecord wraps the dict
    if not isinstance(raw, dict):
        raise PoisonRecord("not a stream record")
    return raw


def _string_key(stream: dict, name: str) -> str | None:
    value = (stream.get("Keys") or {}).get(name)
    return value.get("S") if isinstance(value, dict) else None


def _run_id_of(raw: dict) -> str | None:
    stream = raw.get("dynamodb")
    if not isinstance(stream, dict):
        return None
    pk = _string_key(stream, keys.PK)
    if not pk or not pk.startswith(RUN_PK_PREFIX) or len(pk) == len(RUN_PK_PREFIX):
        return None
    return pk[len(RUN_PK_PREFIX):]


def _image(image: Any) -> dict[str, Any]:
    """A DynamoDB-JSON image as plain values."""
    if not isinstance(image, dict):
        return {}
    try:
        return plain(image)
    except NotDynamoJson as exc:
        raise PoisonRecord(str(exc)) from None


def _status(image: dict) -> str:
    status = image.get("status")
    if status not in STATUSES:
        raise PoisonRecord(f"unknown status {status!r}")
    return status


def _json_attribute(image: dict, name: str) -> Any:
    value = image.get(name)
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise PoisonRecord(f"attribute {name} is not JSON") from None


# ------------------------------------------------------------------ Lambda init phase


def prime() -> None:
    """The init phase in Lambda (SnapStart keeps it): the store and its client, Powertools'
    batch processor, the models, and a batch of one synthetic record (a run's `running`
    change: its event needs no read) through the whole handler — Powertools' wrapper
    included, its logs and metrics going nowhere — the store answering in this process, as
    often as it takes for the path's code to be specialized. No I/O."""
    from workflow_runs.models import WorkflowRun  # noqa: F401
    from workflow_runs.store import rehearsal

    _ready_client()
    entry.instrumented()
    store = _default_store()
    keys_ = {keys.PK: {"S": keys.run_pk("00000000-0000-4000-8000-000000000000")}, keys.SK: {"S": keys.RUN_SK}}
    record = {"eventID": "priming", "eventName": "MODIFY", "eventSource": "aws:dynamodb", "dynamodb": {
        "Keys": keys_, "SequenceNumber": "1", "ApproximateCreationDateTime": 1767225600,
        "NewImage": {**keys_, "status": {"S": "running"}, "tenant": {"S": "priming"}},
        "OldImage": {**keys_, "status": {"S": "scheduled"}, "tenant": {"S": "priming"}}}}
    entry.rehearse(lambda _: ({"Records": [record]}, rehearsal.answered_here(store.client, {})),
                    lambda reply: reply == {"batchItemFailures": []})


def _ready_client() -> None:
    from workflow_runs.store import warm_up

    warm_up(_default_store())  # answered in-process: nothing is sent


# After a restore whose client could not renew its credentials: made again, and readied.
entry.init(prime, remake=(_default_store,), ready=_ready_client)
