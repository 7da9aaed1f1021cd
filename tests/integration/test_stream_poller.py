"""The stream poller: the runs table's stream → Lambda-shaped batches → the projector, on
DynamoDB Local and on moto's server alike; redelivery of failed items; shard lineage."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from workflow_runs.settings import Settings
from workflow_runs.store import NewRun, RunStore
from workflow_runs_dev import dynamodb_local
from workflow_runs_dev.stream_poller import StreamPoller
from workflow_runs_stream import projector

from tests.integration.sse_helpers import (
    EXPECTED_COMPLETED,
    TENANT,
    TWO_STEPS,
    RunWriter,
    script_completed,
    wait_for,
    workflow,
)
from tests.support import dynamodb, make_settings


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = dynamodb_local.start_moto_server()
    yield server.endpoint_url
    server.stop()


@pytest.fixture(params=["dynamodb_local", "moto"])
def backend(request: pytest.FixtureRequest) -> tuple[Settings, RunStore]:
    endpoint = request.getfixturevalue("dynamodb_local_endpoint" if request.param == "dynamodb_local" else "moto_endpoint")
    settings = make_settings(endpoint)
    client = dynamodb(endpoint)
    dynamodb_local.create_tables(client, settings.runs_table, settings.events_table)
    return settings, RunStore(settings, client=client)


def new_run(store: RunStore) -> str:
    workflow_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    wf = store.put_workflow(TENANT, workflow_id, workflow(TWO_STEPS))
    store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=wf, inputs=[]))
    return run_id


def shape_of(store: RunStore, run_id: str) -> list[tuple]:
    out = []
    for _, name, data in store.events_after(run_id, None, 1000):
        content = data.get("content")
        if name == "workflow-run":
            out.append((name, content["status"]))
        elif name == "activity-run":
            out.append((name, content["stepId"], content["status"], content["attempt"]))
        elif name == "result":
            out.append((name, data["workflowRun"]["status"]))
        else:
            out.append((name, data.get("error")))
    return out


class Recorder:
    """The projector handler, recording each batch and failing chosen records a number of times."""

    def __init__(self, store: RunStore, fail: dict[str, int] | None = None):
        self.store = store
        self.fail = dict(fail or {})
        self.batches: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict, context: Any) -> dict:
        with self.lock:
            self.batches.append(event)
        wrapped = functools.partial(projector.handler, store=self.store)
        reply = wrapped({"Records": [r for r in event["Records"] if not self._fails(r)]}, context)
        failed = [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in event["Records"] if self._failed_now(r)]
        return {"batchItemFailures": failed + reply["batchItemFailures"]}

    def _fails(self, record: dict) -> bool:
        return self.fail.get(record["dynamodb"]["Keys"]["SK"]["S"], 0) > 0

    def _failed_now(self, record: dict) -> bool:
        sk = record["dynamodb"]["Keys"]["SK"]["S"]
        if self.fail.get(sk, 0) > 0:
            self.fail[sk] -= 1
            return True
        return False


def test_a_runs_writes_reach_its_event_log_in_order(backend):
    settings, store = backend
    recorder = Recorder(store)
    with StreamPoller(settings, recorder) as poller:
        run_id = new_run(store)
        script_completed(RunWriter(store, run_id))
        assert poller.wait_idle(10)

    assert shape_of(store, run_id) == EXPECTED_COMPLETED
    record = recorder.batches[0]["Records"][0]
    assert record["eventSource"] == "aws:dynamodb" and "/stream/" in record["eventSourceARN"]
    assert record["eventName"] in ("INSERT", "MODIFY") and record["eventID"]
    assert {"Keys", "NewImage", "SequenceNumber", "StreamViewType"} <= set(record["dynamodb"])
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)
    modify = next(r for b in recorder.batches for r in b["Records"] if r["eventName"] == "MODIFY")
    assert "OldImage" in modify["dynamodb"]


def test_failed_items_are_redelivered_until_they_are_projected(backend):
    settings, store = backend
    recorder = Recorder(store, fail={"R#A#000#01": 2})  # the first activity's first two deliveries
    poller = StreamPoller(settings, recorder, retry_delay=0.01)
    with poller:
        run_id = new_run(store)
        script_completed(RunWriter(store, run_id))
        assert poller.wait_idle(10)

    assert shape_of(store, run_id) == EXPECTED_COMPLETED
    assert poller.stats.redeliveries >= 1 and poller.stats.dropped == []


def test_an_item_that_always_fails_is_dropped_after_bounded_retries_and_the_stream_moves_on(backend):
    settings, store = backend
    recorder = Recorder(store, fail={"R#A#000#01": 10**6})
    poller = StreamPoller(settings, recorder, max_retries=2, retry_delay=0.01)
    with poller:
        run_id = new_run(store)
        script_completed(RunWriter(store, run_id))
        assert poller.wait_idle(10)

    assert len(poller.stats.dropped) == 2  # the activity's running and completed records
    assert [e for e in shape_of(store, run_id) if e[1] != "fetch"] == [
        e for e in EXPECTED_COMPLETED if e[1] != "fetch"]


def test_stop_ends_the_thread(backend):
    settings, store = backend
    poller = StreamPoller(settings, Recorder(store)).start()
    thread = poller._thread
    poller.stop()
    assert thread is not None and not thread.is_alive()


# ------------------------------------------------------------------ shard lineage (a scripted stream)


class ScriptedStreams:
    """A dynamodbstreams client over a scripted stream: a parent shard that closes, a child
    that appears only later, records with sequence numbers and nothing else."""

    ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/runs/stream/label"

    def __init__(self) -> None:
        self.shards: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.reads: dict[str, int] = {}

    def add_shard(self, shard_id: str, parent: str | None, seqs: list[int], closed: bool) -> None:
        with self.lock:
            self.shards[shard_id] = {"parent": parent, "seqs": seqs, "closed": closed}

    def list_streams(self, TableName: str) -> dict:
        return {"Streams": [{"StreamArn": self.ARN, "TableName": TableName}]}

    def describe_stream(self, StreamArn: str, ExclusiveStartShardId: str | None = None) -> dict:
        with self.lock:
            # Children listed first, as a real listing may: order must come from lineage.
            shards = [{"ShardId": s, **({"ParentShardId": v["parent"]} if v["parent"] else {})}
                      for s, v in reversed(list(self.shards.items()))]
        return {"StreamDescription": {"StreamArn": StreamArn, "Shards": shards}}

    def get_shard_iterator(self, StreamArn: str, ShardId: str, ShardIteratorType: str, SequenceNumber: str | None = None):
        return {"ShardIterator": f"{ShardId}|0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict:
        shard_id, position = ShardIterator.split("|")
        with self.lock:
            shard = self.shards[shard_id]
            self.reads[shard_id] = self.reads.get(shard_id, 0) + 1
            seqs = shard["seqs"][int(position):int(position) + Limit]
            end = int(position) + len(seqs)
            done = shard["closed"] and end >= len(shard["seqs"])
        records = [{"eventID": str(s), "eventName": "INSERT", "eventSource": "aws:dynamodb", "dynamodb": {
            "Keys": {"PK": {"S": "TEN#x#C"}, "SK": {"S": "ALL"}}, "NewImage": {"PK": {"S": "TEN#x#C"}},
            "SequenceNumber": str(s), "StreamViewType": "NEW_AND_OLD_IMAGES"}} for s in seqs]
        return {"Records": records, **({} if done else {"NextShardIterator": f"{shard_id}|{end}"})}


def test_a_child_shard_is_read_after_its_parent_and_a_closed_shard_is_left_alone():
    streams = ScriptedStreams()
    streams.add_shard("parent", None, [1, 2, 3], closed=True)
    streams.add_shard("child", "parent", [4, 5], closed=False)
    seen: list[int] = []

    def handler(event: dict, context: Any) -> dict:
        seen.extend(int(r["dynamodb"]["SequenceNumber"]) for r in event["Records"])
        return {"batchItemFailures": []}

    settings = Settings(runs_table="runs", events_table="events")
    poller = StreamPoller(settings, handler, client=streams, shard_refresh_seconds=0.05, batch_size=2)
    with poller:
        wait_for(lambda: len(seen) == 5)
        streams.add_shard("grandchild", "child", [7, 8], closed=False)  # appears later
        streams.shards["child"]["closed"] = True
        wait_for(lambda: len(seen) == 7)
        reads_of_parent = streams.reads["parent"]
        assert poller.wait_idle(5)

    assert seen == [1, 2, 3, 4, 5, 7, 8]
    assert streams.reads["parent"] == reads_of_parent  # closed: never read again
