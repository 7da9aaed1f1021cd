"""DynamoDB's Time to Live, on one machine: DynamoDB Local and moto keep expired items for
ever, so `TtlSweeper.sweep` deletes the items whose `expiresAt` has passed, as the TTL
process does in AWS, and remembers them so the stream poller hands their REMOVE records to
the projector as AWS does: with `userIdentity` {"type": "Service", "principalId":
"dynamodb.amazonaws.com"}.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from workflow_runs import keys

TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


class TtlSweeper:
    def __init__(self, client: Any, table: str):
        self._client = client
        self._table = table
        self._lock = threading.Lock()
        self._deleted: set[tuple[str, str]] = set()

    def sweep(self, now: float | None = None) -> int:
        """Delete every item of the table whose TTL attribute is at or before `now` (epoch
        seconds, default: the clock). Returns how many were deleted."""
        at = int(time.time() if now is None else now)
        deleted = 0
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "#ttl <= :now",
            "ExpressionAttributeNames": {"#ttl": keys.TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {":now": {"N": str(at)}},
            "ProjectionExpression": "PK, SK",
        }
        while True:
            page = self._client.scan(**request)
            for item in page.get("Items", []):
                with self._lock:
                    self._deleted.add((item[keys.PK]["S"], item[keys.SK]["S"]))
                self._client.delete_item(TableName=self._table, Key={keys.PK: item[keys.PK], keys.SK: item[keys.SK]})
                deleted += 1
            if "LastEvaluatedKey" not in page:
                return deleted
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def labelled(self, record: dict[str, Any]) -> dict[str, Any]:
        """The GetRecords record as AWS sends it: a deletion the sweep made carries the
        DynamoDB service's `userIdentity`; any other record is returned as it is."""
        if record.get("eventName") != "REMOVE":
            return record
        stream_keys = (record.get("dynamodb") or {}).get("Keys") or {}
        pair = ((stream_keys.get(keys.PK) or {}).get("S"), (stream_keys.get(keys.SK) or {}).get("S"))
        with self._lock:
            by_ttl = pair in self._deleted
        return {**record, "userIdentity": dict(TTL_IDENTITY)} if by_ttl else record
