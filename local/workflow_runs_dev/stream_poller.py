"""The stream poller: the event source mapping of the runs table's stream, on one machine.

A thread reads the embedded table's DynamoDB stream (DynamoDB Local and moto alike) with
DescribeStream / GetShardIterator / GetRecords and hands the projector the batches Lambda
would: `{"Records": [{"eventID", "eventName", "eventSource": "aws:dynamodb",
"eventSourceARN", "dynamodb": {"Keys", "NewImage", "OldImage", "SequenceNumber", …}}]}`.

Like the event source mapping with `ReportBatchItemFailures`, a partial batch response
makes it re-deliver the batch from the lowest failed sequence number on, a bounded number
of times; records still failing after that are dropped (logged, and kept in `dropped`,
the local stand-in for the on-failure destination) and the shard moves on. The runs of
dropped records go to `repair` (the reconciler's re-projection of a log behind its run,
workflow_runs.closing), tried again on every pass until it answers. A child shard
is read only after its parent is drained, so each item's records keep their order.

It polls every `poll_interval` seconds (50 ms by default) while idle, and at once while
records flow, so an SSE client sees a step's change within ~0.1 s on one machine.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from workflow_runs.backoff import Backoff
from workflow_runs.settings import Settings

from . import aws_calls
from .ttl import TtlSweeper

logger = logging.getLogger("workflow_runs_dev.stream_poller")

ProjectorHandler = Callable[[dict[str, Any], Any], Any]


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    iterator: str | None = None
    last_sequence: str | None = None
    closed: bool = False


@dataclass
class PollerStats:
    batches: int = 0
    records: int = 0
    redeliveries: int = 0
    dropped: list[str] = field(default_factory=list)  # sequence numbers given up on


class StreamPoller:
    def __init__(
        self,
        settings: Settings,
        projector_handler: ProjectorHandler,
        client: Any | None = None,
        *,
        poll_interval: float = 0.05,
        batch_size: int = 100,
        max_retries: int = 3,
        retry_delay: float = 0.05,
        shard_refresh_seconds: float = 1.0,
        ttl: TtlSweeper | None = None,
        repair: Callable[[str], Any] | None = None,
    ):
        self._settings = settings
        aws_calls.know(settings)  # the table whose stream it reads, for the IAM recorder
        self._handler = projector_handler
        self._client: Any = client
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._retry_delay = retry_delay
        self._shard_refresh_seconds = shard_refresh_seconds
        self._ttl = ttl  # what deleted by TTL: its REMOVE records carry the service's userIdentity
        self._repair = repair
        self._to_repair: set[str] = set()  # runs of dropped records, until `repair` answers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream_arn: str | None = None
        self._shards: dict[str, _Shard] = {}
        self._refreshed_at = 0.0
        self._idle = threading.Condition()
        self._idle_passes = 0
        self.stats = PollerStats()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the poller is already running")
        if self._client is None:
            self._client = streams_client(self._settings.dynamodb_endpoint_url)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stream-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the stream poller did not stop in time")
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until a pass that STARTED after this call found no new records: everything
        written before the call has been handed to the projector (for tests and tools)."""
        with self._idle:
            # The pass running now may have started before the caller's last write: wait
            # for the one after it.
            target = self._idle_passes + 2
            return self._idle.wait_for(lambda: self._idle_passes >= target, timeout)

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        # The event source mapping reads the stream with the projector's role, and invokes it.
        with aws_calls.acting_as("projector"):
            self._loop()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                moved = self._poll_once()
                failures = 0
            except Exception:
                failures += 1
                logger.exception("stream poll failed", extra={"table": self._settings.runs_table})
                moved = False
                self._stop.wait(Backoff(base_seconds=self._poll_interval, cap_seconds=2.0, jitter=False).delay(failures))
                continue
            if not moved:
                with self._idle:
                    self._idle_passes += 1
                    self._idle.notify_all()
                self._stop.wait(self._poll_interval)

    def _poll_once(self) -> bool:
        self._repair_pending()
        if self._stream_arn is None:
            self._stream_arn = self._find_stream()
            if self._stream_arn is None:
                return False
        if not self._shards or time.monotonic() - self._refreshed_at >= self._shard_refresh_seconds:
            self._refresh_shards()
        moved = False
        for shard in list(self._shards.values()):
            if shard.closed or not self._parent_drained(shard):
                continue
            moved |= self._read(shard)
            if self._stop.is_set():
                break
        return moved

    def _repair_pending(self) -> None:
        for run_id in sorted(self._to_repair):
            try:
                if self._repair is not None:
                    self._repair(run_id)
            except Exception:
                logger.warning("repairing a run's event log failed; trying again", extra={"run_id": run_id},
                               exc_info=True)
                return
            self._to_repair.discard(run_id)

    def _find_stream(self) -> str | None:
        streams = self._client.list_streams(TableName=self._settings.runs_table).get("Streams", [])
        return streams[0]["StreamArn"] if streams else None

    def _refresh_shards(self) -> None:
        start: str | None = None
        while True:
            request: dict[str, Any] = {"StreamArn": self._stream_arn}
            if start:
                request["ExclusiveStartShardId"] = start
            description = self._client.describe_stream(**request)["StreamDescription"]
            for shard in description.get("Shards", []):
                if shard["ShardId"] not in self._shards:
                    self._shards[shard["ShardId"]] = _Shard(shard["ShardId"], shard.get("ParentShardId"))
            start = description.get("LastEvaluatedShardId")
            if not start:
                break
        self._refreshed_at = time.monotonic()

    def _parent_drained(self, shard: _Shard) -> bool:
        parent = self._shards.get(shard.parent_id) if shard.parent_id else None
        return parent is None or parent.closed  # an unknown parent has aged out of the stream

    def _read(self, shard: _Shard) -> bool:
        if shard.iterator is None:
            shard.iterator = self._iterator(shard)
        try:
            response = self._client.get_records(ShardIterator=shard.iterator, Limit=self._batch_size)
        except Exception as exc:
            if type(exc).__name__ in ("ExpiredIteratorException", "TrimmedDataAccessException"):
                shard.iterator = None  # get a fresh one after the last record seen
                return False
            raise
        records = response.get("Records", [])
        if records:
            self._deliver(records)
            shard.last_sequence = records[-1]["dynamodb"]["SequenceNumber"]
        next_iterator = response.get("NextShardIterator")
        if next_iterator is None:
            shard.closed = True  # drained and closed: its children may be read now
            self._refreshed_at = 0.0
        shard.iterator = next_iterator
        return bool(records)

    def _iterator(self, shard: _Shard) -> str:
        request: dict[str, Any] = {"StreamArn": self._stream_arn, "ShardId": shard.shard_id}
        if shard.last_sequence:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.last_sequence)
        else:
            request["ShardIteratorType"] = "TRIM_HORIZON"
        return self._client.get_shard_iterator(**request)["ShardIterator"]

    # ------------------------------------------------------------------ delivery

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        if self._ttl is not None:
            records = [self._ttl.labelled(r) for r in records]
        pending = [lambda_record(r, self._stream_arn or "") for r in records]
        for attempt in range(self._max_retries + 1):
            self.stats.batches += 1
            self.stats.records += len(pending)
            failed = self._invoke(pending)
            if not failed:
                return
            # As the event source mapping: the checkpoint is the lowest failed sequence
            # number; it and everything after it comes again (the projector is idempotent).
            first = next((i for i, r in enumerate(pending) if r["dynamodb"]["SequenceNumber"] in failed), 0)
            pending = pending[first:]
            if attempt < self._max_retries:
                self.stats.redeliveries += 1
                if self._stop.wait(Backoff(base_seconds=self._retry_delay, cap_seconds=float("inf"), jitter=False)
                                   .delay(attempt)):
                    return
        still_failing = [r["dynamodb"]["SequenceNumber"] for r in pending if r["dynamodb"]["SequenceNumber"] in failed]
        self.stats.dropped.extend(still_failing)
        if self._repair is not None:
            self._to_repair.update(run_id for r in pending if r["dynamodb"]["SequenceNumber"] in failed
                                   and (run_id := _run_id(r)) is not None)
        logger.error(
            "stream records dropped after retries",
            extra={"sequence_numbers": still_failing, "attempts": self._max_retries + 1},
        )

    def _invoke(self, records: list[dict[str, Any]]) -> set[str]:
        """Sequence numbers the projector reported failed (all of them if it raised)."""
        everything = {r["dynamodb"]["SequenceNumber"] for r in records}
        try:
            response = self._handler({"Records": records}, None) or {}
        except Exception:
            logger.exception("the projector raised; retrying the whole batch")
            return everything
        failures = response.get("batchItemFailures") or []
        reported = {str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)}
        if reported - everything:
            return everything  # an identifier we did not send: Lambda fails the whole batch too
        return reported


def _run_id(record: dict[str, Any]) -> str | None:
    from workflow_runs import keys

    pk = ((record.get("dynamodb") or {}).get("Keys") or {}).get(keys.PK, {}).get("S") or ""
    prefix = keys.run_pk("")
    return pk[len(prefix):] if pk.startswith(prefix) else None


def streams_client(endpoint_url: str | None) -> Any:
    from botocore.config import Config
    from workflow_runs import aws_clients

    # botocore >= 1.44 sends StreamArn calls to an account-specific host, which moto answers
    # with 404; disabling account-id endpoints keeps them on the table's endpoint.
    config = Config(account_id_endpoint_mode="disabled", retries={"mode": "standard", "max_attempts": 3})
    return aws_clients.make("dynamodbstreams", endpoint_url=endpoint_url, config=config)


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as the event source mapping puts it into a Lambda event."""
    stream = dict(record.get("dynamodb") or {})
    created = stream.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        stream["ApproximateCreationDateTime"] = int(created.timestamp())
    for image in ("Keys", "NewImage", "OldImage"):
        if image in stream:
            stream[image] = {name: _json_value(value) for name, value in stream[image].items()}
    return {
        "eventID": record.get("eventID"),
        "eventName": record.get("eventName"),
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", "us-east-1"),
        "dynamodb": stream,
        "eventSourceARN": stream_arn,
        # Present on a TTL deletion: {"type": "Service", "principalId": "dynamodb.amazonaws.com"}.
        **({"userIdentity": record["userIdentity"]} if record.get("userIdentity") else {}),
    }


def _json_value(value: Any) -> Any:
    """boto3 hands binary attributes over as bytes; Lambda's JSON carries them base64-encoded."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value
