"""Key layouts of the two DynamoDB tables.

The CDK data construct, the store and the tests all import these constants, so the table
definition and the code that reads it cannot drift apart.

Runs table (single table, streamed to the projector):
  run            PK=RUN#<runId>                 SK=R
  activity run   PK=RUN#<runId>                 SK=R#A#<stepIndex:03d>#<attempt:02d>
  thinking chunk PK=RUN#<runId>                 SK=T#<activityRunId>#<seq:06d>   (TTL)
  workflow       PK=TEN#<tenant>#WFS             SK=WF#<wfId>
  counters       PK=TEN#<tenant>#C               SK=ALL | WF#<wfId> | N#<wfId>#<name>
Runs carry four list indexes (newest first by GSK=<createdAt>#<runId>):
  by tenant (GSI_TENANT), tenant+status (GSI_STATUS), tenant+workflow (GSI_WORKFLOW),
  tenant+workflow+status (GSI_WORKFLOW_STATUS), and two for search by the run's workflow
  name: tenant+workflow+name (GSI_NAME) and tenant+workflow+name+status (GSI_NAME_STATUS).
A tenant's workflows share one partition: get is a GetItem, list a Query.

Events table (no stream): PK=RUN#<runId>, SK=<cursor>, TTL attribute `expiresAt`.
"""

from __future__ import annotations

PK = "PK"
SK = "SK"
GSK = "GSK"
TTL_ATTRIBUTE = "expiresAt"

GSI_TENANT = "GSI1"
GSI_STATUS = "GSI2"
GSI_WORKFLOW = "GSI3"
GSI_WORKFLOW_STATUS = "GSI4"
GSI_NAME = "GSI5"
GSI_NAME_STATUS = "GSI6"

# Partition key attribute of each index; every index sorts on GSK.
INDEX_PARTITION_KEYS: dict[str, str] = {
    GSI_TENANT: "GPK1",
    GSI_STATUS: "GPK2",
    GSI_WORKFLOW: "GPK3",
    GSI_WORKFLOW_STATUS: "GPK4",
    GSI_NAME: "GPK5",
    GSI_NAME_STATUS: "GPK6",
}

RUN_SK = "R"
ACTIVITY_SK_PREFIX = "R#A#"
THINKING_SK_PREFIX = "T#"
WORKFLOW_SK_PREFIX = "WF#"
COUNTER_ALL_SK = "ALL"


def run_pk(run_id: str) -> str:
    return f"RUN#{run_id}"


def activity_sk(step_index: int, attempt: int) -> str:
    return f"{ACTIVITY_SK_PREFIX}{step_index:03d}#{attempt:02d}"


def thinking_sk(activity_run_id: str, seq: int) -> str:
    return f"{THINKING_SK_PREFIX}{activity_run_id}#{seq:06d}"


def workflows_pk(tenant: str) -> str:
    return f"TEN#{tenant}#WFS"


def workflow_sk(workflow_id: str) -> str:
    return f"{WORKFLOW_SK_PREFIX}{workflow_id}"


def counters_pk(tenant: str) -> str:
    return f"TEN#{tenant}#C"


def counter_workflow_sk(workflow_id: str) -> str:
    return f"WF#{workflow_id}"


def counter_name_sk(workflow_id: str, name: str) -> str:
    return f"N#{workflow_id}#{name}"


COUNTER_NAME_SK_PREFIX = "N#"


def run_index_keys(tenant: str, workflow_id: str, workflow_name: str, status: str) -> dict[str, str]:
    """Partition keys of every list index a run belongs to (status ones move with the status)."""
    base = f"TEN#{tenant}"
    wf = f"{base}#WF#{workflow_id}"
    name = f"{wf}#N#{workflow_name}"
    return {
        INDEX_PARTITION_KEYS[GSI_TENANT]: f"{base}#RUNS",
        INDEX_PARTITION_KEYS[GSI_STATUS]: f"{base}#S#{status}",
        INDEX_PARTITION_KEYS[GSI_WORKFLOW]: wf,
        INDEX_PARTITION_KEYS[GSI_WORKFLOW_STATUS]: f"{wf}#S#{status}",
        INDEX_PARTITION_KEYS[GSI_NAME]: name,
        INDEX_PARTITION_KEYS[GSI_NAME_STATUS]: f"{name}#S#{status}",
    }


STATUS_INDEX_ATTRIBUTES = (
    INDEX_PARTITION_KEYS[GSI_STATUS],
    INDEX_PARTITION_KEYS[GSI_WORKFLOW_STATUS],
    INDEX_PARTITION_KEYS[GSI_NAME_STATUS],
)

# A sparse index of runs that are not yet terminal, sharded so no partition runs hot;
# the reconciler's sweep reads it (never a Scan). The attribute is removed on a terminal
# transition, which drops the run from the index by itself.
GSI_ACTIVE = "GSI7"
INDEX_PARTITION_KEYS[GSI_ACTIVE] = "GPK7"
ACTIVE_SHARDS = 4


def active_shard_key(run_id: str) -> str:
    return f"ACTIVE#{int(run_id.replace('-', '')[-4:], 16) % ACTIVE_SHARDS}"


def idempotency_pk(tenant: str, key: str) -> str:
    return f"TEN#{tenant}#IDEM#{key}"


IDEMPOTENCY_SK = "I"

# Attributes the list indexes project besides their keys: what a list item shows.
LIST_PROJECTION = ("id", "tenant", "workflowId", "workflowName", "status", "inputs", "createdAt", "updatedAt")


def runs_table_spec(table_name: str) -> dict:
    """CreateTable arguments for the runs table; the CDK construct mirrors these constants."""
    attributes = [PK, SK, GSK, *INDEX_PARTITION_KEYS.values()]
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in attributes],
        "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": partition, "KeyType": "HASH"},
                    {"AttributeName": GSK, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(LIST_PROJECTION)},
            }
            for index, partition in INDEX_PARTITION_KEYS.items()
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
