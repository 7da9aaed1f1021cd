"""A failed stream batch read back from the runs table's DynamoDB stream.

The projector's event source mapping parks a batch it gave up on as its coordinates only
(DDBStreamBatchInfo: streamArn, shardId, startSequenceNumber, endSequenceNumber). The records
stay readable for the stream's 24 h retention: GetShardIterator AT_SEQUENCE_NUMBER, then
GetRecords until the end of the range (or the shard's end)."""

from __future__ import annotations

from typing import Any

from workflow_runs import keys

PAGE = 1000  # GetRecords' maximum


def runs_in_range(streams: Any, batch: dict[str, Any]) -> set[str]:
    """The run ids of the records between startSequenceNumber and endSequenceNumber
    (inclusive) of one shard. Raises what the streams client raises (an expired iterator, a
    trimmed range: TrimmedDataAccessException)."""
    start, end = int(batch["startSequenceNumber"]), int(batch["endSequenceNumber"])
    iterator = streams.get_shard_iterator(
        StreamArn=batch["streamArn"], ShardId=batch["shardId"], ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=batch["startSequenceNumber"],
    ).get("ShardIterator")
    runs: set[str] = set()
    prefix = keys.run_pk("")
    while iterator:
        page = streams.get_records(ShardIterator=iterator, Limit=PAGE)
        records = page.get("Records") or []
        for record in records:
            stream = record.get("dynamodb") or {}
            if int(stream.get("SequenceNumber", start)) > end:
                return runs
            pk = (stream.get("Keys") or {}).get(keys.PK, {}).get("S") or ""
            if pk.startswith(prefix):
                runs.add(pk[len(prefix):])
        if not records:
            return runs  # an open shard with nothing more: the range is read
        iterator = page.get("NextShardIterator")
    return runs


def streams_client(endpoint_url: str | None = None) -> Any:
    """A DynamoDB Streams client (the table's endpoint in `workflow-runs dev` and the tests)."""
    from botocore.config import Config

    from .. import aws_clients

    # botocore >= 1.44 sends StreamArn calls to an account-specific host; local endpoints
    # answer those with 404, so the calls stay on the endpoint given.
    config = Config(account_id_endpoint_mode="disabled", retries={"mode": "standard", "max_attempts": 5})
    return aws_clients.make("dynamodbstreams", endpoint_url=endpoint_url, config=config)
