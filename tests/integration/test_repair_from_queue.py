"""The repair path in AWS, over DynamoDB Local's real stream: the projector's on-failure
queue gives a failed batch's coordinates only (DDBStreamBatchInfo); the reconciler reads the
range back from the stream and writes the closing event of every ended run in it."""

from __future__ import annotations

import json
import uuid

import pytest
from workflow_runs.store import NewRun, RunStore
from workflow_runs.store.stream_range import streams_client
from workflow_runs_dev import aws_calls
from workflow_runs_step_runner import reconciler

from tests.integration.sse_helpers import TENANT, TWO_STEPS, RunWriter, script_completed, workflow


@pytest.fixture
def backend(local_settings, local_store):
    return local_settings, local_store, streams_client(local_settings.dynamodb_endpoint_url)


def repaired(event: dict, store: RunStore, streams) -> dict:
    with aws_calls.acting_as("reconciler"):  # its calls are the reconciler's (the IAM check)
        return reconciler.repair_failed_batches(event, store=store, streams=streams)


def run_written(store: RunStore, *, end: bool) -> str:
    workflow_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    wf = store.put_workflow(TENANT, workflow_id, workflow(TWO_STEPS))
    store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=wf, inputs=[]))
    if end:
        script_completed(RunWriter(store, run_id))
    return run_id


def failed_batch(streams, settings, message_id: str = "m-1") -> dict:
    """An SQS record as the on-failure destination sends it: the whole stream so far as one
    failed batch (nothing was projected: every record, the closing one too, was dropped)."""
    arn = streams.list_streams(TableName=settings.runs_table)["Streams"][0]["StreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
    body = {"requestContext": {"condition": "RetryAttemptsExhausted"},
            "DDBStreamBatchInfo": {"streamArn": arn, "shardId": shard["ShardId"],
                                   "startSequenceNumber": seqs[0], "endSequenceNumber": seqs[-1],
                                   "batchSize": len(seqs)}}
    return {"messageId": message_id, "eventSource": "aws:sqs", "body": json.dumps(body)}


def names(store: RunStore, run_id: str) -> list[str]:
    return [name for _, name, _ in store.events_after(run_id, None, 1000)]


def test_a_run_whose_closing_event_was_dropped_gets_it_from_the_queue_message(backend):
    settings, store, streams = backend
    ended, going = run_written(store, end=True), run_written(store, end=False)
    assert names(store, ended) == [] and names(store, going) == []  # the projector never wrote them

    reply = repaired({"Records": [failed_batch(streams, settings)]}, store, streams)

    assert reply == {"batchItemFailures": []}
    assert names(store, ended)[-1] == "result"
    assert list(store.events_after(ended, None, 1000))[-1][2]["workflowRun"]["status"] == "completed"
    assert names(store, going) == []  # still going: nothing to close
    # Again (SQS gives a message more than once): nothing is written twice.
    repaired({"Records": [failed_batch(streams, settings)]}, store, streams)
    assert names(store, ended).count("result") == 1


def test_a_message_whose_range_cannot_be_read_is_a_batch_item_failure(backend):
    settings, store, streams = backend
    ended = run_written(store, end=True)
    good = failed_batch(streams, settings, "good")
    gone = json.loads(good["body"])
    gone["DDBStreamBatchInfo"]["shardId"] = "shardId-00000000000000000000-deadbeef"
    bad = {"messageId": "gone", "eventSource": "aws:sqs", "body": json.dumps(gone)}

    reply = repaired({"Records": [bad, good]}, store, streams)

    assert reply == {"batchItemFailures": [{"itemIdentifier": "gone"}]}
    assert names(store, ended)[-1] == "result"  # the readable message was still repaired


def test_the_reconcilers_entry_sends_a_queue_batch_to_the_repair(backend, monkeypatch):
    settings, store, streams = backend
    ended = run_written(store, end=True)
    monkeypatch.setattr(reconciler, "collaborators", lambda: {"store": store})  # no sweep is asked for
    monkeypatch.setattr(reconciler, "streams_client", lambda: streams)

    event = {"Records": [failed_batch(streams, settings)]}
    with aws_calls.acting_as("reconciler"):
        assert reconciler._handle(event) == {"batchItemFailures": []}
    assert names(store, ended)[-1] == "result"
