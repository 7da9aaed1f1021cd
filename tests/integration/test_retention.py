"""Retention on DynamoDB Local: an ended run, its steps and its events expire after
RUN_RETENTION_DAYS through DynamoDB's TTL, the counters stay exact when they do, and a run
not ended never expires. DynamoDB Local runs no TTL: `TtlSweeper` deletes what is due as
the TTL process does, and the stream poller hands those deletions to the real projector
with the DynamoDB service's `userIdentity`, as AWS sends them."""

from __future__ import annotations

import functools
import threading
import time
import uuid
from typing import Any

import pytest
from workflow_runs import keys
from workflow_runs.errors import NotFound
from workflow_runs.models import RunError, Status
from workflow_runs.settings import Settings
from workflow_runs.store import NewRun, RunStore
from workflow_runs_dev.stream_poller import StreamPoller
from workflow_runs_dev.ttl import TTL_IDENTITY, TtlSweeper
from workflow_runs_stream import projector

from tests.integration.sse_helpers import TENANT, TWO_STEPS, RunWriter, script_completed, workflow

DAY = 86400


class Recorder:
    """The projector, keeping every batch it was handed."""

    def __init__(self, store: RunStore):
        self.store = store
        self.batches: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict, context: Any) -> dict:
        with self.lock:
            self.batches.append(event)
        return functools.partial(projector.handler, store=self.store)(event, context)

    def removals(self) -> list[dict]:
        with self.lock:
            return [r for b in self.batches for r in b["Records"] if r["eventName"] == "REMOVE"]


def new_run(store: RunStore, workflow_id: str) -> RunWriter:
    wf = store.get_workflow(TENANT, workflow_id)
    run_id = str(uuid.uuid4())
    store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=wf, inputs=[]))  # type: ignore[arg-type]
    return RunWriter(store, run_id)


def partition(store: RunStore, run_id: str) -> set[str]:
    items = store.client.query(TableName=store.runs_table, KeyConditionExpression="PK = :pk",
                               ExpressionAttributeValues={":pk": {"S": keys.run_pk(run_id)}}, ConsistentRead=True)
    return {i[keys.SK]["S"] for i in items["Items"]}


def head(store: RunStore, run_id: str) -> dict:
    return store.client.get_item(TableName=store.runs_table, Key={keys.PK: {"S": keys.run_pk(run_id)},
                                                                   keys.SK: {"S": keys.RUN_SK}}, ConsistentRead=True)["Item"]


def test_an_ended_run_expires_after_the_retention_and_its_counts_follow_exactly_once(
    local_settings: Settings, local_store: RunStore
):
    # Given a workflow with a completed, a failed and a running run, and one still scheduled
    store = local_store
    workflow_id = str(uuid.uuid4())
    store.put_workflow(TENANT, workflow_id, workflow(TWO_STEPS))
    recorder = Recorder(store)
    sweeper = TtlSweeper(store.client, store.runs_table)
    with StreamPoller(local_settings, recorder, ttl=sweeper) as poller:
        completed = new_run(store, workflow_id)
        ended_at = time.time()
        script_completed(completed)
        failed = new_run(store, workflow_id)
        failed.status(Status.RUNNING)
        failed.status(Status.FAILED, error=RunError(message="no", step_id="fetch"))
        running = new_run(store, workflow_id)
        running.status(Status.RUNNING)
        step = running.start_step("fetch")
        scheduled = new_run(store, workflow_id)
        assert poller.wait_idle(10)

        # Then an ended run's head is due RUN_RETENTION_DAYS (90) after it ended; a run not ended is never due
        expires = int(head(store, completed.run_id)[keys.TTL_ATTRIBUTE]["N"])
        assert ended_at + 90 * DAY - 5 <= expires <= time.time() + 90 * DAY
        assert keys.TTL_ATTRIBUTE not in head(store, running.run_id)
        assert keys.TTL_ATTRIBUTE not in head(store, scheduled.run_id)
        first_event = store.client.query(TableName=store.events_table, KeyConditionExpression="PK = :pk",
                                         ExpressionAttributeValues={":pk": {"S": keys.run_pk(completed.run_id)}})
        assert int(first_event["Items"][0][keys.TTL_ATTRIBUTE]["N"]) >= ended_at + 90 * DAY - 60
        assert store.counts(TENANT, workflow_id) == {"scheduled": 1, "running": 1, "waiting": 0, "completed": 1,
                                                     "failed": 1, "cancelled": 0}
        assert len(partition(store, completed.run_id)) == 3  # its head and its two steps

        # When a day before the retention ends nothing is due, and after it the TTL deletes what is
        assert sweeper.sweep(now=time.time() + 89 * DAY) == 0
        swept = sweeper.sweep(now=time.time() + 91 * DAY)
        assert poller.wait_idle(10)

    # Then the ended runs are gone, with their steps, from every read; the counts follow
    assert swept == 2
    for gone in (completed.run_id, failed.run_id):
        with pytest.raises(NotFound):
            store.get_run(TENANT, gone)
        assert partition(store, gone) == {keys.EXPIRED_SK}  # the marker that counted it, which expires itself
    assert store.counts(TENANT, workflow_id) == {"scheduled": 1, "running": 1, "waiting": 0, "completed": 0,
                                                 "failed": 0, "cancelled": 0}
    page = store.list_runs(TENANT)
    assert page.total == 2 and {r.id for r in page.items} == {running.run_id, scheduled.run_id}
    assert store.get_run(TENANT, running.run_id).activity_runs[0].id == step.id
    # … the projector saw the deletions as AWS sends them
    removals = [r for r in recorder.removals() if r["dynamodb"]["Keys"][keys.SK]["S"] == keys.RUN_SK]
    assert len(removals) == 2 and all(r["userIdentity"] == TTL_IDENTITY for r in removals)
    assert all(r["dynamodb"]["OldImage"]["status"]["S"] in ("completed", "failed") for r in removals)

    # When the stream delivers the deletions again (a retried batch)
    reply = projector.handler({"Records": removals}, None, store=store)

    # Then nothing moves twice
    assert reply == {"batchItemFailures": []}
    assert store.counts(TENANT, workflow_id)["completed"] == 0
    assert store.counts(TENANT, workflow_id)["failed"] == 0
    assert store.list_runs(TENANT).total == 2


def test_retention_is_a_setting_of_ninety_days_by_default():
    settings = Settings(runs_table="runs-x", events_table="events-x", run_retention_days=7)
    assert RunStore(settings, client=object()).retention_seconds == 7 * DAY
    assert Settings.from_env({"RUNS_TABLE": "r-x", "EVENTS_TABLE": "e-x"}).run_retention_days == 90
    assert Settings.from_env({"RUNS_TABLE": "r-x", "EVENTS_TABLE": "e-x", "RUN_RETENTION_DAYS": "30"}) \
        .run_retention_days == 30
