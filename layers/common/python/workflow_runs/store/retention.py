"""Retention: what follows when DynamoDB's TTL deletes an ended run's head.

A run's head gets `expiresAt` (RUN_RETENTION_DAYS on) in the transaction that ends it; a run
not ended has none, so it never expires. When the TTL deletes the head, the deletion reaches
the projector on the table's stream (with the head's old image), which calls `expire_run`:

1. the run's counters move (its status −1) in one transaction with a marker item claimed
   on condition that it does not exist yet, so a redelivered record moves nothing twice;
   the marker expires itself after the stream's own retention (24 h) has long passed;
2. the run's other items (sealed envs, activity runs, approvals) are deleted; deleting an
   item already gone is a no-op, so this step is safe to repeat.

The head alone carries every index key, so its deletion already took the run out of every
list. The run's events expire by their own TTL (written with the same retention).
"""

from __future__ import annotations

import time
from typing import Any

from .. import keys
from ..marshal import key, n, s
from ..models import Status
from .dynamo import ConditionFailed
from .runs import RunWrites

# Longer than a stream record can be redelivered (the stream keeps records 24 hours).
EXPIRED_MARKER_TTL_SECONDS = 3 * 24 * 3600


class RunRetention(RunWrites):
    def expire_run(self, run_id: str, head: dict[str, Any]) -> bool:
        """Account for a run whose head is gone (`head`: its last image, plain values).
        True when this call moved the counters; False when a delivery before it had."""
        marker = {
            **key(keys.run_pk(run_id), keys.EXPIRED_SK),
            "status": s(str(head["status"])),
            keys.TTL_ATTRIBUTE: n(int(time.time()) + EXPIRED_MARKER_TTL_SECONDS),
        }
        claim = {"Put": {"TableName": self.runs_table, "Item": marker,
                         "ConditionExpression": "attribute_not_exists(PK)"}}
        counters = self._counter_writes(str(head["tenant"]), run_id, str(head["workflowId"]),
                                        str(head.get("workflowName") or ""), {Status(head["status"]): -1})
        try:
            self.db.transact([claim, *counters])
            moved = True
        except ConditionFailed:
            moved = False
        for item in self.db.query_all(
            TableName=self.runs_table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": s(keys.run_pk(run_id))},
            ProjectionExpression="PK, SK",
            ConsistentRead=True,
        ):
            if item[keys.SK]["S"] not in (keys.RUN_SK, keys.EXPIRED_SK):
                self.db.delete(TableName=self.runs_table, Key={keys.PK: item[keys.PK], keys.SK: item[keys.SK]})
        return moved
