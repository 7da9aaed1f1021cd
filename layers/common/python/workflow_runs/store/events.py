"""The event log: what the projector made of the runs table's stream, read by SSE streams."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from .. import keys
from ..marshal import js, key, n, s
from .base import StoreBase


class EventLog(StoreBase):
    def put_event(self, run_id: str, cursor: str, name: str, data: Mapping[str, Any]) -> None:
        """Idempotent: a redelivered stream record rewrites the same event under the same cursor."""
        self.db.put(
            TableName=self.events_table,
            Item={
                **key(keys.run_pk(run_id), cursor),
                "event": s(name),
                "data": js(data),
                keys.TTL_ATTRIBUTE: n(int(time.time()) + self.retention_seconds),
            },
        )

    def events_after(self, run_id: str, cursor: str | None, limit: int = 100, *,
                     consistent: bool = True) -> list[tuple[str, str, dict[str, Any]]]:
        """Events of a run after `cursor`, oldest first; read consistently unless the caller
        can do with an eventually consistent read (`workflow_runs.log_reader` says when)."""
        condition = "PK = :pk AND SK > :c" if cursor else "PK = :pk"
        values = {":pk": s(keys.run_pk(run_id)), **({":c": s(cursor)} if cursor else {})}
        response = self.db.query(
            TableName=self.events_table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ConsistentRead=consistent,
            Limit=limit,
        )
        return [(i[keys.SK]["S"], i["event"]["S"], json.loads(i["data"]["S"])) for i in response.get("Items", [])]
