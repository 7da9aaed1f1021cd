"""Stream leases: how many SSE streams a tenant has open, across every instance of the
stream function (each stream is its own Lambda invocation, so no process can count them).

A tenant has `limit` slots, items of one partition (keys.stream_leases_pk). Opening a stream
takes a free slot with a conditional put: the slot is free when it has no item, or its
lease expired. Closing deletes the item, on condition that the lease is still ours. A lease
expires on its own `ttl_seconds` after it was taken (the stream's longest life and a margin),
so a stream whose instance crashed gives its slot back then, and the table's TTL removes the
item later. Two openers that pick the same slot race on the condition: the loser reads the
partition again and picks another, so the cap is exact, never approximate.

Cost per stream: one consistent Query of the tenant's slots (≤ `limit` small items), one
conditional PutItem, one conditional DeleteItem. The writes land on the runs table's stream,
which the projector ignores (their partition key is not a run's).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .. import keys
from ..errors import Unavailable
from ..marshal import key, n, s
from .base import StoreBase
from .dynamo import ConditionFailed

LEASE_ID = "leaseId"
# Lost races in a row before the opener gives up (each means another stream just opened).
RACE_ATTEMPTS = 8


@dataclass(frozen=True)
class StreamLease:
    tenant: str
    slot: int
    lease_id: str
    open_streams: int  # the tenant's open streams right after this one opened, this one included


class StreamLeases(StoreBase):
    clock: Callable[[], float] = time.time
    pick: Callable[[list[int]], int] = random.choice  # spread concurrent openers over the free slots

    def open_streams(self, tenant: str) -> int:
        """The tenant's streams holding a lease now."""
        return len(self._live_slots(tenant, int(self.clock())))

    def acquire_stream_lease(self, tenant: str, limit: int, ttl_seconds: int) -> StreamLease | None:
        """A lease on one of the tenant's `limit` slots, or None when every slot is held."""
        for _ in range(RACE_ATTEMPTS):
            now = int(self.clock())
            live = self._live_slots(tenant, now)
            free = [slot for slot in range(limit) if slot not in live]
            if not free:
                return None
            slot, lease_id = self.pick(free), uuid.uuid4().hex
            try:
                self.db.put(
                    TableName=self.runs_table,
                    Item={
                        **key(keys.stream_leases_pk(tenant), keys.stream_lease_sk(slot)),
                        LEASE_ID: s(lease_id),
                        keys.TTL_ATTRIBUTE: n(now + ttl_seconds),
                    },
                    ConditionExpression="attribute_not_exists(PK) OR #exp <= :now",
                    ExpressionAttributeNames={"#exp": keys.TTL_ATTRIBUTE},
                    ExpressionAttributeValues={":now": n(now)},
                )
            except ConditionFailed:
                continue  # another stream took this slot first: look again
            return StreamLease(tenant, slot, lease_id, len(live) + 1)
        raise Unavailable("too many streams are opening at once; try again")

    def release_stream_lease(self, lease: StreamLease) -> None:
        """Give the slot back; a lease that expired and was taken by another stream is not ours
        to delete, and one already gone is fine."""
        try:
            self.db.delete(
                TableName=self.runs_table,
                Key=key(keys.stream_leases_pk(lease.tenant), keys.stream_lease_sk(lease.slot)),
                ConditionExpression="#lease = :lease",
                ExpressionAttributeNames={"#lease": LEASE_ID},
                ExpressionAttributeValues={":lease": s(lease.lease_id)},
            )
        except ConditionFailed:
            pass

    def _live_slots(self, tenant: str, now: int) -> set[int]:
        items = self.db.query_all(
            TableName=self.runs_table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": s(keys.stream_leases_pk(tenant)),
                                       ":prefix": s(keys.STREAM_LEASE_SK_PREFIX)},
            ProjectionExpression="SK, #exp",
            ExpressionAttributeNames={"#exp": keys.TTL_ATTRIBUTE},
            ConsistentRead=True,
        )
        return {int(item[keys.SK]["S"].removeprefix(keys.STREAM_LEASE_SK_PREFIX)) for item in items
                if int(item[keys.TTL_ATTRIBUTE]["N"]) > now}
