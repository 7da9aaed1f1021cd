"""The projector on moto: stream records (Lambda-shaped, built here) → the run's event log."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from workflow_runs.models import Status, WorkflowDefinition
from workflow_runs.store import NewRun, RunStore
from workflow_runs_stream import projector
from workflow_runs_stream.cursors import START, event_cursor, is_closing, is_cursor

TENANT = "acme"
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/runs/stream/2026-11-28T00:00:00.000"


# ------------------------------------------------------------------ record builders


def ddb(value: Any) -> dict:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    return {"S": value}


def record(seq: int | str, name: str, pk: str, sk: str, new: dict | None = None, old: dict | None = None) -> dict:
    keys = {"PK": {"S": pk}, "SK": {"S": sk}}
    stream: dict[str, Any] = {"Keys": keys, "SequenceNumber": str(seq), "StreamViewType": "NEW_AND_OLD_IMAGES",
                              "SizeBytes": 100, "ApproximateCreationDateTime": 1795872120}
    if new is not None:
        stream["NewImage"] = {**keys, **{k: ddb(v) for k, v in new.items()}}
    if old is not None:
        stream["OldImage"] = {**keys, **{k: ddb(v) for k, v in old.items()}}
    return {"eventID": uuid.uuid4().hex, "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1", "dynamodb": stream, "eventSourceARN": STREAM_ARN}


def run_record(seq, run_id: str, status: str, old_status: str | None = None, **extra) -> dict:
    new = {"id": run_id, "tenant": TENANT, "status": status, **extra}
    if old_status is None:
        return record(seq, "INSERT", f"RUN#{run_id}", "R", new)
    return record(seq, "MODIFY", f"RUN#{run_id}", "R", new, {"id": run_id, "tenant": TENANT, "status": old_status})


def activity_record(seq, run_id: str, status: str, old_status: str | None = None, *, activity_id: str = "a-1",
                    step_id: str = "fetch", attempt: int = 1, outputs: dict | None = None) -> dict:
    item = {"id": activity_id, "stepId": step_id, "status": status, "attempt": attempt}
    if outputs is not None:
        item["outputs"] = json.dumps(outputs)  # as the store writes them
    sk = f"R#A#000#{attempt:02d}"
    if old_status is None:
        return record(seq, "INSERT", f"RUN#{run_id}", sk, item)
    return record(seq, "MODIFY", f"RUN#{run_id}", sk, item, {**item, "status": old_status})


def thinking_record(seq, run_id: str, text: str, name: str = "INSERT") -> dict:
    item = {"activityRunId": "a-1", "stepId": "think", "content": text}
    return record(seq, name, f"RUN#{run_id}", "T#a-1#000001", item, item if name == "MODIFY" else None)


def batch(*records: dict) -> dict:
    return {"Records": list(records)}


@pytest.fixture
def run_id(moto_store: RunStore) -> str:
    """A real run in the store (the `result` event carries it whole)."""
    workflow_id = str(uuid.uuid4())
    wf = moto_store.put_workflow(TENANT, workflow_id, WorkflowDefinition.model_validate(
        {"name": "Summarise", "steps": [{"id": "fetch", "type": "transform", "config": {"output": "x"}}]}))
    rid = str(uuid.uuid4())
    moto_store.create_run(NewRun(run_id=rid, tenant=TENANT, workflow=wf, inputs=[]))
    return rid


def log(store: RunStore, run_id: str) -> list[tuple[str, str, dict]]:
    return store.events_after(run_id, None, limit=1000)


def names(store: RunStore, run_id: str) -> list[str]:
    return [name for _, name, _ in log(store, run_id)]


# ------------------------------------------------------------------ one record → its events


def test_run_insert_becomes_a_scheduled_workflow_run_event(moto_store: RunStore, run_id: str):
    events = projector.project(run_record(7, run_id, "scheduled"), moto_store)

    assert [(e.name, e.data) for e in events] == [
        ("workflow-run", {"content": {"workflowRunId": run_id, "status": "scheduled"}})]
    assert log(moto_store, run_id) == [(event_cursor("7", 0), "workflow-run", events[0].data)]


def test_run_change_without_a_status_change_says_nothing(moto_store: RunStore, run_id: str):
    change = run_record(8, run_id, "scheduled", "scheduled", executionStarted=True)
    assert projector.project(change, moto_store) == []
    assert log(moto_store, run_id) == []


def test_run_completing_writes_its_status_then_the_result_with_the_whole_run(moto_store: RunStore, run_id: str):
    stored = moto_store.get_run_record(run_id)
    moto_store.transition_run(moto_store.transition_run(stored, Status.RUNNING), Status.COMPLETED)

    events = projector.project(run_record(20, run_id, "completed", "running"), moto_store)

    assert [e.name for e in events] == ["workflow-run", "result"]
    assert events[0].data == {"content": {"workflowRunId": run_id, "status": "completed"}}
    assert events[1].data == {"success": True, "workflowRun": moto_store.get_run(TENANT, run_id).dump()}
    assert not is_closing(events[0].cursor) and is_closing(events[1].cursor)
    assert events[0].cursor.startswith("~")  # the run's end sorts after what came with it
    assert names(moto_store, run_id) == ["workflow-run", "result"]


def test_run_failing_closes_with_its_error_message_and_step(moto_store: RunStore, run_id: str):
    error = json.dumps({"message": "fetch said no", "stepId": "fetch"})
    events = projector.project(run_record(21, run_id, "failed", "running", error=error), moto_store)

    assert [(e.name, e.data) for e in events][1] == (
        "error", {"error": "fetch said no", "details": {"workflowRunId": run_id, "status": "failed", "stepId": "fetch"}})


@pytest.mark.parametrize(("status", "message"), [("failed", "run failed"), ("cancelled", "run cancelled")])
def test_run_ending_without_an_error_message_says_how_it_ended(moto_store: RunStore, run_id: str, status, message):
    events = projector.project(run_record(22, run_id, status, "running"), moto_store)

    assert events[1].name == "error"
    assert events[1].data == {"error": message, "details": {"workflowRunId": run_id, "status": status, "stepId": None}}


def test_activity_insert_and_status_change_become_activity_run_events(moto_store: RunStore, run_id: str):
    projector.project(activity_record(30, run_id, "running", attempt=2), moto_store)
    projector.project(activity_record(31, run_id, "running", "running", attempt=2), moto_store)  # outputs only
    projector.project(activity_record(32, run_id, "completed", "running", attempt=2), moto_store)

    assert [data for _, _, data in log(moto_store, run_id)] == [
        {"content": {"workflowRunId": run_id, "activityRunId": "a-1", "stepId": "fetch", "status": s, "attempt": 2}}
        for s in ("running", "completed")
    ]


def test_a_waiting_attempt_says_what_it_waits_for_and_no_other_status_carries_outputs(moto_store: RunStore,
                                                                                       run_id: str):
    prompt = {"prompt": "Publish tides?"}
    projector.project(activity_record(33, run_id, "running", step_id="review"), moto_store)
    projector.project(activity_record(34, run_id, "waiting", "running", step_id="review", outputs=prompt), moto_store)
    projector.project(activity_record(35, run_id, "completed", "waiting", step_id="review",
                                      outputs={"approved": True, "comment": None}), moto_store)
    projector.project(activity_record(36, run_id, "waiting", step_id="pause", activity_id="a-2",
                                      outputs={"seconds": 5}), moto_store)

    contents = [data["content"] for _, _, data in log(moto_store, run_id)]
    assert [(c["stepId"], c["status"], c.get("outputs")) for c in contents] == [
        ("review", "running", None), ("review", "waiting", prompt), ("review", "completed", None),
        ("pause", "waiting", {"seconds": 5})]


def test_thinking_insert_becomes_a_thinking_event_and_a_rewrite_or_expiry_does_not(moto_store: RunStore, run_id: str):
    projector.project(thinking_record(40, run_id, "Let me see."), moto_store)
    projector.project(thinking_record(41, run_id, "Let me see.", name="MODIFY"), moto_store)
    projector.project(thinking_record(42, run_id, "Let me see.", name="REMOVE"), moto_store)

    assert log(moto_store, run_id) == [
        (event_cursor("40", 0), "thinking", {"content": "Let me see.", "stepId": "think", "activityRunId": "a-1"})]


def test_items_that_are_not_a_runs_say_nothing(moto_store: RunStore):
    workflow = record(50, "INSERT", "TEN#acme#WFS", "WF#x", {"name": "Summarise"})
    counter = record(51, "MODIFY", "TEN#acme#C", "ALL", {"running": 1}, {"running": 0})
    assert projector.project(workflow, moto_store) == [] and projector.project(counter, moto_store) == []


def test_cursors_order_numerically_and_the_closing_one_sorts_after_everything():
    assert event_cursor("9", 0) < event_cursor("10", 0) < event_cursor("10", 1)
    assert event_cursor("000000000000000000009", 0) == event_cursor("9", 0)
    assert event_cursor("10", 1, terminal=True) > event_cursor("9" * 40, 0)
    assert is_closing(event_cursor("10", 1, terminal=True)) and not is_closing(event_cursor("10", 0, terminal=True))
    assert START < event_cursor("1", 0)
    assert all(is_cursor(c) for c in (START, event_cursor("5", 3), event_cursor("5", 3, terminal=True)))
    assert not any(is_cursor(c) for c in ("", "12", "~0", "a" * 43, event_cursor("5", 3) + "0"))


# ------------------------------------------------------------------ batches (the Lambda handler)


def test_the_same_batch_delivered_three_times_leaves_each_event_once(moto_store: RunStore, run_id: str):
    delivery = batch(run_record(1, run_id, "scheduled"), run_record(2, run_id, "running", "scheduled"),
                     activity_record(3, run_id, "running"), thinking_record(4, run_id, "hmm"),
                     activity_record(5, run_id, "failed", "running"),
                     run_record(6, run_id, "failed", "running"))

    replies = [projector.handler(delivery, None, store=moto_store) for _ in range(3)]

    assert replies == [{"batchItemFailures": []}] * 3
    assert names(moto_store, run_id) == ["workflow-run", "workflow-run", "activity-run", "thinking",
                                         "activity-run", "workflow-run", "error"]


@pytest.mark.parametrize(
    "poison",
    [
        lambda rid: run_record(3, rid, "exploded", "running"),
        lambda rid: {**run_record(3, rid, "running", "scheduled"), "eventName": "UPSERT"},
        lambda rid: record(3, "INSERT", f"RUN#{rid}", "R", None),  # a KEYS_ONLY stream
        lambda rid: activity_record(3, rid, "running") | {"dynamodb": {
            **activity_record(3, rid, "running")["dynamodb"], "SequenceNumber": "not-a-number"}},
    ],
    ids=["unknown-status", "unknown-event-name", "no-new-image", "bad-sequence-number"],
)
def test_a_poisoned_record_is_reported_and_the_others_are_projected(moto_store: RunStore, run_id: str, poison):
    other_run = str(uuid.uuid4())
    bad = poison(run_id)
    delivery = batch(run_record(1, run_id, "scheduled"), activity_record(2, other_run, "running"), bad,
                     thinking_record(4, run_id, "after the bad one"), activity_record(5, other_run, "completed", "running"))

    reply = projector.handler(delivery, None, store=moto_store)

    assert reply == {"batchItemFailures": [{"itemIdentifier": bad["dynamodb"]["SequenceNumber"]}]}
    assert names(moto_store, run_id) == ["workflow-run", "thinking"]
    assert names(moto_store, other_run) == ["activity-run", "activity-run"]


class FlakyStore:
    """The store, with writes of one cursor failing the first `times` times (a throttle)."""

    def __init__(self, store: RunStore, cursor: str, times: int = 1):
        self._store, self._cursor, self._left = store, cursor, times

    def put_event(self, run_id: str, cursor: str, name: str, data: dict) -> None:
        if cursor == self._cursor and self._left > 0:
            self._left -= 1
            raise ConnectionError("throttled")
        self._store.put_event(run_id, cursor, name, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_after_a_failed_write_the_runs_later_records_wait_and_other_runs_go_on(moto_store: RunStore, run_id: str):
    other_run = str(uuid.uuid4())
    delivery = batch(run_record(1, run_id, "scheduled"), activity_record(2, run_id, "running"),
                     activity_record(3, other_run, "running"), thinking_record(4, run_id, "later"))
    flaky = FlakyStore(moto_store, event_cursor("2", 0))

    first = projector.handler(delivery, None, store=flaky)

    # The failed record and the later one of the same run are reported; no gap in the run's log
    assert first == {"batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": "4"}]}
    assert names(moto_store, run_id) == ["workflow-run"]
    assert names(moto_store, other_run) == ["activity-run"]
    # As the event source mapping does: redeliver from the lowest failed sequence number
    again = projector.handler(batch(*delivery["Records"][1:]), None, store=flaky)
    assert again == {"batchItemFailures": []}
    assert names(moto_store, run_id) == ["workflow-run", "activity-run", "thinking"]
    assert names(moto_store, other_run) == ["activity-run"]


def test_importing_the_projector_loads_neither_boto3_nor_pydantic_nor_powertools():
    probe = ("import sys, workflow_runs_stream.projector; "
             "print(sorted(m for m in ('boto3', 'botocore', 'pydantic', 'aws_lambda_powertools') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_a_batch_projects_each_run_s_terminal_record_last():
    # A cancel's transaction: the run's record may reach the stream before its activity's.
    terminal = {"eventName": "MODIFY", "dynamodb": {
        "Keys": {"PK": {"S": "RUN#r1"}, "SK": {"S": "R"}}, "SequenceNumber": "1",
        "NewImage": {"status": {"S": "cancelled"}}, "OldImage": {"status": {"S": "running"}}}}
    activity = {"eventName": "MODIFY", "dynamodb": {
        "Keys": {"PK": {"S": "RUN#r1"}, "SK": {"S": "R#A#000#01"}}, "SequenceNumber": "2",
        "NewImage": {"status": {"S": "cancelled"}}, "OldImage": {"status": {"S": "running"}}}}
    other = {"eventName": "INSERT", "dynamodb": {
        "Keys": {"PK": {"S": "RUN#r2"}, "SK": {"S": "R"}}, "SequenceNumber": "3",
        "NewImage": {"status": {"S": "scheduled"}}}}
    assert projector.terminal_records_last([terminal, activity, other]) == [activity, other, terminal]
