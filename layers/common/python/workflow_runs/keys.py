"""Key layouts of the two DynamoDB tables.

The CDK data construct, the store and the tests all import these constants, so the table
definition and the code that reads it cannot drift apart. Why the layout is what it is
(the write units each partition key receives per run, and the ceiling that gives a tenant)
is in docs/decisions.md, "A data design without hot keys".

Runs table (single table, streamed to the projector):
  run head       PK=RUN#<runId>   SK=R                 small and mutable: status, times, index keys
  sealed envs    PK=RUN#<runId>   SK=R#E               written once, only when the run has envs
  activity run   PK=RUN#<runId>   SK=R#A#<stepIndex:03d>#<attempt:02d>
  approval       PK=RUN#<runId>   SK=R#P#<stepIndex:03d>    sealed task token, decision (never projected)
  expired        PK=RUN#<runId>   SK=R#X               the head's TTL deletion was counted (TTL)
  thinking chunk PK=RUN#<runId>   SK=T#<activityRunId>#<seq:06d>   (TTL)
  workflow       PK=TEN#<t>#WFS   SK=WF#<wfId>         the latest version
  wf version     PK=TEN#<t>#WFS   SK=WV#<wfId>#<version:06d>   immutable; runs read their steps here
  series         PK=TEN#<t>#WFS   SK=S#<wfId>#<name>   every (workflow, name) runs were started under
  counter shard  PK=TEN#<t>#C#WF#<wfId>#<shard:02d>  SK=C   a workflow's counts: <status> per status,
                 N#<name>#<status> per series (the names its runs were started under, also in `names`)
  idempotency    PK=TEN#<t>#IDEM#<key>  SK=I  (TTL)
  stream lease   PK=TEN#<t>#STREAMS     SK=L#<slot:04d>  one open SSE stream of the tenant (TTL)

A run's status change moves the one counter shard its run id picks (one of COUNTER_SHARDS
of its workflow), in the same transaction: its workflow's and its series' counts in one item.
A count is the sum of the workflow's shards (one BatchGetItem); a tenant's total is the sum
of its workflows' (docs/decisions.md, 2026-12-07).

Run heads carry five indexes, each sorted newest first by GSK=<createdAt>#<runId> and
write-sharded by the run id (LIST_SHARDS partitions per list, read in parallel and merged):
  by tenant (BY_TENANT), tenant+status (BY_STATUS), a (workflow, name) series (BY_SERIES),
  series+status (BY_SERIES_STATUS); a workflow's list is the union of its series.
  ACTIVE: runs not yet terminal, across tenants, for the reconciler's sweep (keys and the run class).

An ended run's head carries `expiresAt` (RUN_RETENTION_DAYS after its end); the projector
turns its TTL deletion into the counters' move and the deletion of the run's other items
(store/retention.py).

Events table (no stream): PK=RUN#<runId>, SK=<cursor>, TTL attribute `expiresAt`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

PK = "PK"
SK = "SK"
GSK = "GSK"
TTL_ATTRIBUTE = "expiresAt"

RUN_SK = "R"
ENVS_SK = "R#E"
ACTIVITY_SK_PREFIX = "R#A#"
APPROVAL_SK_PREFIX = "R#P#"
EXPIRED_SK = "R#X"
THINKING_SK_PREFIX = "T#"
WORKFLOW_SK_PREFIX = "WF#"
VERSION_SK_PREFIX = "WV#"
SERIES_SK_PREFIX = "S#"
COUNTER_SK = "C"
IDEMPOTENCY_SK = "I"
STREAM_LEASE_SK_PREFIX = "L#"

# How many partitions a tenant's lists and counters are spread over. Raising them raises
# the tenant's ceiling and the read fan-out of a list page / a count (docs/decisions.md).
LIST_SHARDS = 4
COUNTER_SHARDS = 10
# Active is the one key every tenant's runs share: a run writes it twice (enters, leaves), so
# 32 shards hold 32 × 1,000 / 2 = 16,000 runs/s for the deployment (bench section 11).
ACTIVE_SHARDS = 32

# Attributes the list indexes project besides their keys: what a list item shows, so a
# page needs no read of the runs themselves.
LIST_PROJECTION = ("id", "tenant", "workflowId", "workflowName", "status", "inputs", "createdAt", "updatedAt")


@dataclass(frozen=True)
class Index:
    name: str
    partition: str  # the attribute holding the index's partition key
    projection: tuple[str, ...] | None  # None: KEYS_ONLY


BY_TENANT = Index("ByTenant", "GPK1", LIST_PROJECTION)
BY_STATUS = Index("ByStatus", "GPK2", LIST_PROJECTION)
BY_SERIES = Index("BySeries", "GPK3", LIST_PROJECTION)
BY_SERIES_STATUS = Index("BySeriesStatus", "GPK4", LIST_PROJECTION)
# The run class rides along: the sweep treats an Express run without asking Step Functions.
ACTIVE = Index("Active", "GPK5", ("orchestration",))
INDEXES = (BY_TENANT, BY_STATUS, BY_SERIES, BY_SERIES_STATUS, ACTIVE)
# The indexes whose key holds the status: a status change moves the run between partitions.
STATUS_INDEXES = (BY_STATUS, BY_SERIES_STATUS)


def shard_of(run_id: str, shards: int) -> int:
    """Stable for a run, spread evenly over run ids (a CRC, not Python's salted hash)."""
    return zlib.crc32(run_id.encode()) % shards


# --- items -----------------------------------------------------------------------------


def run_pk(run_id: str) -> str:
    return f"RUN#{run_id}"


def activity_sk(step_index: int, attempt: int) -> str:
    return f"{ACTIVITY_SK_PREFIX}{step_index:03d}#{attempt:02d}"


def approval_sk(step_index: int) -> str:
    """An approval step's decision and its sealed task token (never projected, never returned)."""
    return f"{APPROVAL_SK_PREFIX}{step_index:03d}"


def thinking_sk(activity_run_id: str, seq: int) -> str:
    return f"{THINKING_SK_PREFIX}{activity_run_id}#{seq:06d}"


def workflows_pk(tenant: str) -> str:
    return f"TEN#{tenant}#WFS"


def workflow_sk(workflow_id: str) -> str:
    return f"{WORKFLOW_SK_PREFIX}{workflow_id}"


def version_sk(workflow_id: str, version: int) -> str:
    return f"{VERSION_SK_PREFIX}{workflow_id}#{version:06d}"


def series_sk(workflow_id: str, name: str) -> str:
    return f"{SERIES_SK_PREFIX}{workflow_id}#{name}"


def stream_leases_pk(tenant: str) -> str:
    return f"TEN#{tenant}#STREAMS"


def stream_lease_sk(slot: int) -> str:
    return f"{STREAM_LEASE_SK_PREFIX}{slot:04d}"


def idempotency_pk(tenant: str, key: str) -> str:
    return f"TEN#{tenant}#IDEM#{key}"


# --- counters ----------------------------------------------------------------------------

def counter_pk(tenant: str, workflow_id: str, shard: int) -> str:
    return f"TEN#{tenant}#C#WF#{workflow_id}#{shard:02d}"


def series_count(name: str, status: str) -> str:
    """The attribute of a workflow's counter shard that counts its runs started under `name`
    (a series) with `status`; the bare status attribute counts all of the workflow's."""
    return f"N#{name}#{status}"


# --- list partitions ---------------------------------------------------------------------


def tenant_partition(tenant: str, shard: int) -> str:
    return f"TEN#{tenant}#RUNS#{shard}"


def status_partition(tenant: str, status: str, shard: int) -> str:
    return f"TEN#{tenant}#S#{status}#{shard}"


def series_partition(tenant: str, workflow_id: str, name: str, shard: int) -> str:
    return f"TEN#{tenant}#WF#{workflow_id}#N#{name}#{shard}"


def series_status_partition(tenant: str, workflow_id: str, name: str, status: str, shard: int) -> str:
    return f"TEN#{tenant}#WF#{workflow_id}#N#{name}#S#{status}#{shard}"


def active_partition(shard: int) -> str:
    return f"ACTIVE#{shard}"


def run_index_keys(tenant: str, run_id: str, workflow_id: str, name: str, status: str) -> dict[str, str]:
    """The index partition keys a run's head carries while it has `status`."""
    shard = shard_of(run_id, LIST_SHARDS)
    return {
        BY_TENANT.partition: tenant_partition(tenant, shard),
        BY_STATUS.partition: status_partition(tenant, status, shard),
        BY_SERIES.partition: series_partition(tenant, workflow_id, name, shard),
        BY_SERIES_STATUS.partition: series_status_partition(tenant, workflow_id, name, status, shard),
    }


# --- table specs -------------------------------------------------------------------------


def runs_table_spec(table_name: str) -> dict:
    """CreateTable arguments for the runs table; the CDK construct mirrors these constants."""
    attributes = [PK, SK, GSK, *(index.partition for index in INDEXES)]
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in attributes],
        "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition, "KeyType": "HASH"},
                    {"AttributeName": GSK, "KeyType": "RANGE"},
                ],
                "Projection": (
                    {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(index.projection)}
                    if index.projection
                    else {"ProjectionType": "KEYS_ONLY"}
                ),
            }
            for index in INDEXES
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    }


def events_table_spec(table_name: str) -> dict:
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": PK, "AttributeType": "S"},
            {"AttributeName": SK, "AttributeType": "S"},
        ],
        "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
    }
