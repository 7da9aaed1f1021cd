"""The one place that calls DynamoDB, and tells a lost condition from a busy table.

DynamoDB cancels a transaction for several reasons, one per item (`CancellationReasons`):
`ConditionalCheckFailed` is a real answer (the item is not what we read: someone else won),
while `TransactionConflict` (another transaction touched the item at the same time),
`ThrottlingError`, `ProvisionedThroughputExceeded` and `RequestLimitExceeded` say nothing
about the data. Those are retried here with jittered exponential backoff, bounded; if the
table stays busy through every retry the caller gets `Unavailable` (nothing was written:
a cancelled transaction writes nothing). Single requests are retried by botocore's own
retry handler (standard mode) for throttling; what it gives up on becomes `Unavailable`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..backoff import Backoff
from ..errors import Unavailable

CONDITION_FAILED = "ConditionalCheckFailed"
# Cancellation reasons that say the table was busy, not that the data disagreed.
RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)
# Error codes of single requests that mean the same (after botocore's own retries).
BUSY_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionInProgressException",
        "TransactionConflictException",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
MAX_BATCH_GET = 100


class ConditionFailed(Exception):
    """A conditional write's condition did not hold. `failed` holds the indexes of the
    transaction entries whose condition failed (empty for a single write)."""

    def __init__(self, failed: Sequence[int] = ()):
        super().__init__(f"condition failed on entries {list(failed)}")
        self.failed = tuple(failed)


@lru_cache(maxsize=8)
def dynamodb_client(endpoint_url: str | None = None) -> Any:
    from botocore.config import Config  # deferred: the stream app and the tests import this module freely

    from .. import aws_clients

    config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=64)
    return aws_clients.make("dynamodb", endpoint_url=endpoint_url, config=config)


@dataclass
class Dynamo:
    client: Any
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random
    # What the retries saw, for the tests and the benchmarks.
    retried: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ writes

    def transact(self, items: Sequence[Mapping[str, Any]]) -> None:
        """TransactWriteItems; ConditionFailed when any entry's condition failed (a real
        answer), retried when the only reasons are conflicts or throttling."""
        delays = self.backoff.delays(self.rng)
        while True:
            try:
                self._call(self.client.transact_write_items, TransactItems=list(items))
                return
            except self.client.exceptions.TransactionCanceledException as exc:
                codes = [str((r or {}).get("Code") or "None") for r in exc.response.get("CancellationReasons") or []]
                failed = [i for i, code in enumerate(codes) if code == CONDITION_FAILED]
                if failed:
                    raise ConditionFailed(failed) from None
                busy = [code for code in codes if code in RETRYABLE_REASONS]
                if not busy or any(code not in RETRYABLE_REASONS | {"None"} for code in codes):
                    raise  # a validation or size problem: a bug, not contention
                self._note(busy[0])
                delay = next(delays, None)
                if delay is None:
                    raise Unavailable("the store is busy; nothing was changed; try again") from None
                self.sleep(delay)

    def put(self, **request: Any) -> None:
        self._conditional(self.client.put_item, request)

    def update(self, **request: Any) -> dict[str, Any]:
        return self._conditional(self.client.update_item, request)

    def delete(self, **request: Any) -> None:
        self._conditional(self.client.delete_item, request)

    def _conditional(self, call: Callable[..., dict[str, Any]], request: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._call(call, **request)
        except self.client.exceptions.ConditionalCheckFailedException:
            raise ConditionFailed() from None

    # ------------------------------------------------------------------ reads

    def get(self, **request: Any) -> dict[str, Any] | None:
        return self._call(self.client.get_item, **request).get("Item")

    def query(self, **request: Any) -> dict[str, Any]:
        return self._call(self.client.query, **request)

    def query_all(self, **request: Any) -> Iterator[dict[str, Any]]:
        while True:
            response = self.query(**request)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def batch_get(self, table: str, keys: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Every item of `keys` that exists, in any order; unprocessed keys are asked again
        with backoff (DynamoDB returns them when a partition is busy)."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), MAX_BATCH_GET):
            pending: list[Mapping[str, Any]] = list(keys[start : start + MAX_BATCH_GET])
            delays = self.backoff.delays(self.rng)
            while pending:
                response = self._call(self.client.batch_get_item, RequestItems={table: {"Keys": pending}})
                found.extend(response.get("Responses", {}).get(table, []))
                pending = list((response.get("UnprocessedKeys") or {}).get(table, {}).get("Keys") or [])
                if pending:
                    self._note("UnprocessedKeys")
                    delay = next(delays, None)
                    if delay is None:
                        raise Unavailable("the store is busy; try again")
                    self.sleep(delay)
        return found

    # ------------------------------------------------------------------ plumbing

    def _call(self, call: Callable[..., dict[str, Any]], **request: Any) -> dict[str, Any]:
        """One request. A single write to an item a transaction holds (TransactionConflictException,
        which botocore does not retry) is retried here like a cancelled transaction's conflict;
        throttling botocore has already retried. What stays busy is Unavailable."""
        from botocore.exceptions import ClientError  # botocore is loaded with the client

        delays = self.backoff.delays(self.rng)
        while True:
            try:
                return call(**request)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code") or "")
                if code not in BUSY_ERRORS:
                    raise
                self._note(code)
                delay = next(delays, None) if code == "TransactionConflictException" else None
                if delay is None:
                    raise Unavailable("the store is busy; nothing was changed; try again") from None
                self.sleep(delay)

    def _note(self, reason: str) -> None:
        self.retried[reason] = self.retried.get(reason, 0) + 1
