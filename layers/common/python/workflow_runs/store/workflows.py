"""Workflows: the latest version, its immutable versions (what runs execute) and the
(workflow, name) series runs are counted and searched by."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .. import keys
from ..errors import Conflict, NotFound
from ..marshal import js, json_of, key, n, plain, s
from ..models import Step, Workflow, WorkflowDefinition, utc_now
from .base import StoreBase
from .dynamo import ConditionFailed


class WorkflowStore(StoreBase):
    def put_workflow(self, tenant: str, workflow_id: str, definition: WorkflowDefinition,
                     expected_version: int | None = None) -> Workflow:
        """Create or replace; the version goes up by one, conditionally on the one we read.
        Writes the new version's immutable copy, registers its name as a series, and makes
        sure the workflow's counter shards exist and know the name (the dashboard and a
        workflow's list read them).

        `expected_version` (an editor's precondition: the version it read) makes the write
        conditional on the stored head still having it, in the same transaction: Conflict
        when it has not (or there is no workflow), and no read-again-and-bump — of two
        editors who read the same version, one wins and the other is told."""
        head_key = key(keys.workflows_pk(tenant), keys.workflow_sk(workflow_id))
        now = utc_now()
        for _ in range(5):
            current = self.db.get(TableName=self.runs_table, Key=head_key, ConsistentRead=True)
            old = plain(current) if current else None
            if expected_version is not None and (old is None or old["version"] != expected_version):
                raise Conflict(_stale(workflow_id, expected_version, old["version"] if old else None))
            workflow = Workflow(
                id=workflow_id,
                version=(old["version"] + 1) if old else 1,
                created_at=old["createdAt"] if old else now,
                updated_at=now,
                **definition.model_dump(),
            )
            body = workflow_body(tenant, workflow, definition)
            condition = (
                {"ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": n(old["version"])}}
                if old
                else {"ConditionExpression": "attribute_not_exists(PK)"}
            )
            version_key = key(keys.workflows_pk(tenant), keys.version_sk(workflow_id, workflow.version))
            writes = [
                {"Put": {"TableName": self.runs_table, "Item": {**head_key, **body}, **condition}},
                {"Put": {"TableName": self.runs_table, "Item": {**version_key, **body}}},
            ]
            if not old or old["name"] != workflow.name:
                writes += self._series_writes(tenant, workflow_id, workflow.name)
            try:
                self.db.transact(writes)
                return workflow
            except ConditionFailed:
                if expected_version is not None:
                    # The head's `version = :v` (:v is the expected version) failed: another
                    # editor's PUT landed between our read and our write.
                    raise Conflict(_stale(workflow_id, expected_version, None, lost_race=True)) from None
                continue  # a concurrent PUT won; read again and bump past it
        raise Conflict("the workflow is being changed concurrently; try again")

    def workflow_version(self, tenant: str, workflow_id: str, version: int) -> Workflow:
        """One immutable version of a workflow, as it was written (what a run of it executes)."""
        item = self.db.get(
            TableName=self.runs_table, Key=key(keys.workflows_pk(tenant), keys.version_sk(workflow_id, version))
        )
        if not item:
            raise NotFound(f"workflow {workflow_id} version {version} not found")
        return workflow_from(plain(item))

    def _series_writes(self, tenant: str, workflow_id: str, name: str) -> list[dict]:
        series = {
            "Put": {
                "TableName": self.runs_table,
                "Item": {
                    **key(keys.workflows_pk(tenant), keys.series_sk(workflow_id, name)),
                    "workflowId": s(workflow_id),
                    "workflowName": s(name),
                },
            }
        }
        counters = [
            {
                "Update": {
                    "TableName": self.runs_table,
                    "Key": key(keys.counter_pk(tenant, workflow_id, shard), keys.COUNTER_SK),
                    "UpdateExpression": "ADD #names :name",
                    "ExpressionAttributeNames": {"#names": "names"},
                    "ExpressionAttributeValues": {":name": {"SS": [name]}},
                }
            }
            for shard in range(keys.COUNTER_SHARDS)
        ]
        return [series, *counters]

    def get_workflow(self, tenant: str, workflow_id: str) -> Workflow:
        item = self.db.get(TableName=self.runs_table, Key=key(keys.workflows_pk(tenant), keys.workflow_sk(workflow_id)))
        if not item:
            raise NotFound(f"workflow {workflow_id} not found")
        return workflow_from(plain(item))

    def list_workflows(self, tenant: str, page: int, limit: int) -> tuple[list[Workflow], int]:
        items = self.db.query_all(
            TableName=self.runs_table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
            ExpressionAttributeValues={":pk": s(keys.workflows_pk(tenant)), ":p": s(keys.WORKFLOW_SK_PREFIX)},
        )
        workflows = sorted((workflow_from(plain(i)) for i in items), key=lambda w: (w.name.casefold(), w.id))
        start = (page - 1) * limit
        return workflows[start : start + limit], len(workflows)

    def steps_of(self, tenant: str, workflow_id: str, version: int) -> list[Step]:
        """The steps of one version. Versions never change, so they are cached per process."""
        return list(self._version_steps(tenant, workflow_id, version))

    @lru_cache(maxsize=256)  # noqa: B019 - the store lives as long as the process, on purpose
    def _version_steps(self, tenant: str, workflow_id: str, version: int) -> tuple[Step, ...]:
        item = self.db.get(
            TableName=self.runs_table, Key=key(keys.workflows_pk(tenant), keys.version_sk(workflow_id, version))
        )
        if not item:
            raise NotFound(f"workflow {workflow_id} version {version} not found")
        return tuple(workflow_from(plain(item)).steps)

    def series(self, tenant: str, workflow_id: str | None = None) -> list[tuple[str, str]]:
        """Every (workflow id, name) runs of the tenant (or of one workflow) were started under."""
        prefix = keys.SERIES_SK_PREFIX + (f"{workflow_id}#" if workflow_id else "")
        rows = self.db.query_all(
            TableName=self.runs_table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
            ExpressionAttributeValues={":pk": s(keys.workflows_pk(tenant)), ":p": s(prefix)},
        )
        return [(r["workflowId"], r["workflowName"]) for r in map(plain, rows)]


def workflow_body(tenant: str, workflow: Workflow, definition: WorkflowDefinition) -> dict[str, Any]:
    """A workflow's stored attributes: its head's and each of its versions' copies."""
    return {
        "id": s(workflow.id),
        "tenant": s(tenant),
        "version": n(workflow.version),
        "name": s(workflow.name),
        "createdAt": s(workflow.created_at),
        "updatedAt": s(workflow.updated_at),
        "definition": js(definition.dump()),
    }


def _stale(workflow_id: str, expected: int, stored: int | None, *, lost_race: bool = False) -> str:
    if lost_race:
        return (f"workflow {workflow_id} is no longer at version {expected}: another change landed first; "
                "GET it again and re-apply your edit")
    if stored is None:
        return f"workflow {workflow_id} does not exist, so it is not at version {expected}"
    return f"workflow {workflow_id} is at version {stored}, not {expected}: GET it again and re-apply your edit"


def workflow_from(row: dict) -> Workflow:
    definition = json_of(row, "definition", {})
    return Workflow.model_validate(
        {**definition, "id": row["id"], "version": row["version"], "createdAt": row["createdAt"], "updatedAt": row["updatedAt"]}
    )
