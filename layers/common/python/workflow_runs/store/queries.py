"""Run reads: one run with its steps, counts, and list pages.

A list page reads every write-shard of its list in parallel from where the previous page
ended (`after`: the sort key of its last item), merges them newest first and keeps
`limit`: the same cost at any depth. Totals come from the workflows' counter shards, read in
parallel with the page."""

from __future__ import annotations

import contextvars
import heapq
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from typing import Any, TypeVar

from .. import keys
from ..errors import NotFound
from ..marshal import json_of, key, plain, s
from ..models import NON_TERMINAL, ActivityRun, RunError, RunInput, Status, WorkflowRun, WorkflowRunSummary
from ..states import STANDARD
from .records import Page, RunRecord, StaleRun
from .workflows import WorkflowStore

T = TypeVar("T")


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=16, thread_name_prefix="store-read")


def in_parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run independent reads at once (a list page's shards); one call runs inline. Each runs
    in a copy of the caller's context (its context variables: the request's, the function's)."""
    if len(calls) <= 1:
        return [call() for call in calls]
    return [future.result() for future in [_pool().submit(contextvars.copy_context().run, call) for call in calls]]


class RunQueries(WorkflowStore):
    # ------------------------------------------------------------------ one run

    def get_run_record(self, run_id: str, tenant: str | None = None) -> RunRecord:
        """The run, its envs and all its activity runs in one Query (its steps come from the
        workflow version, cached). Another tenant's run is NotFound."""
        rows = {item[keys.SK]["S"]: item for item in self._run_items(run_id)}
        head = plain(rows[keys.RUN_SK]) if keys.RUN_SK in rows else None
        if head is None or (tenant is not None and head["tenant"] != tenant):
            raise NotFound(f"workflow run {run_id} not found")
        steps = self.steps_of(head["tenant"], head["workflowId"], head["workflowVersion"])
        order = {st.id: i for i, st in enumerate(steps)}
        activities = [activity_from(plain(item)) for sk, item in rows.items() if sk.startswith(keys.ACTIVITY_SK_PREFIX)]
        activities.sort(key=lambda a: (a.created_at, order.get(a.step_id, 0), a.attempt))
        envs_row = plain(rows[keys.ENVS_SK]) if keys.ENVS_SK in rows else {}
        return RunRecord(run=run_from(head, activities), tenant=head["tenant"], workflow_version=head["workflowVersion"],
                         steps=steps, sealed_envs=envs_row.get("envs"), step_seq=int(head.get("stepSeq") or 0),
                         sealed_for=envs_row.get("sealedFor"))

    def get_run(self, tenant: str, run_id: str) -> WorkflowRun:
        """The public run (no steps needed: one Query), read consistently: a GET right after
        an execute, and the projector's closing `result`, see every write before them."""
        rows = [plain(i) for i in self._run_items(run_id)]
        head = next((r for r in rows if r[keys.SK] == keys.RUN_SK), None)
        if head is None or head["tenant"] != tenant:
            raise NotFound(f"workflow run {run_id} not found")
        # The sort key holds the step's index and the attempt: the order get_run_record gives.
        steps = sorted((r for r in rows if r[keys.SK].startswith(keys.ACTIVITY_SK_PREFIX)),
                       key=lambda r: (r["createdAt"], r[keys.SK]))
        return run_from(head, [activity_from(r) for r in steps])

    def _run_items(self, run_id: str) -> list[dict[str, Any]]:
        """The run's head, envs and activity runs (not its thinking chunks): one consistent Query."""
        return list(
            self.db.query_all(
                TableName=self.runs_table,
                KeyConditionExpression="PK = :pk AND begins_with(SK, :r)",
                ExpressionAttributeValues={":pk": s(keys.run_pk(run_id)), ":r": s(keys.RUN_SK)},
                ConsistentRead=True,
            )
        )

    def run_status(self, run_id: str) -> Status | None:
        state = self.run_state(run_id)
        return state[0] if state else None

    def run_state(self, run_id: str) -> tuple[Status, str] | None:
        """The run's status and when it last changed (one consistent GetItem), or None."""
        item = self.db.get(
            TableName=self.runs_table,
            Key=key(keys.run_pk(run_id), keys.RUN_SK),
            ProjectionExpression="#st, updatedAt",
            ExpressionAttributeNames={"#st": "status"},
            ConsistentRead=True,
        )
        return (Status(item["status"]["S"]), item["updatedAt"]["S"]) if item else None

    # ------------------------------------------------------------------ counts

    def counts(self, tenant: str, workflow_id: str) -> dict[str, int]:
        """Every status of a workflow's runs: its counter shards in one BatchGetItem. The
        shards exist from the workflow's creation on, so none means NotFound."""
        shards = self._counter_shards(tenant, [workflow_id])
        if not shards:
            raise NotFound(f"workflow {workflow_id} not found")
        return sum_counts(shards)

    def _counter_shards(self, tenant: str, workflow_ids: Iterable[str]) -> list[dict[str, Any]]:
        wanted = [key(keys.counter_pk(tenant, workflow_id, shard), keys.COUNTER_SK)
                  for workflow_id in workflow_ids for shard in range(keys.COUNTER_SHARDS)]
        return [plain(i) for i in self.db.batch_get(self.runs_table, wanted)] if wanted else []

    def _tenant_counts(self, tenant: str) -> dict[str, int]:
        """The tenant's totals: the sum of its workflows' counters (those runs were started
        of: every workflow with a series)."""
        return sum_counts(self._counter_shards(tenant, sorted({wf for wf, _ in self.series(tenant)})))

    def _series_counts(self, tenant: str, series: list[tuple[str, str]]) -> dict[str, int]:
        """The totals of some series: their attributes in their workflows' counter shards."""
        names: dict[str, set[str]] = {}
        for wf, name in series:
            for shard in range(keys.COUNTER_SHARDS):
                names.setdefault(keys.counter_pk(tenant, wf, shard), set()).add(name)
        counts = {st.value: 0 for st in Status}
        for shard_item in self._counter_shards(tenant, sorted({wf for wf, _ in series})):
            for name in names.get(shard_item[keys.PK], ()):
                for st in Status:
                    counts[st.value] += int(shard_item.get(keys.series_count(name, st.value), 0) or 0)
        return counts

    # ------------------------------------------------------------------ lists

    def list_runs(
        self,
        tenant: str,
        *,
        workflow_id: str | None = None,
        status: Status | None = None,
        search: str | None = None,
        limit: int = 10,
        after: str | None = None,
        offset: int = 0,
    ) -> Page:
        """Newest first with an exact total. `after` continues a list where a page ended;
        `offset` skips that many items first (bounded by the caller).

        Requests: the list's shard Queries and its counts, all at once; a workflow's list
        first reads its counter shards (which also name its series), a search first Queries
        the tenant's series; the tenant's whole list counts with its series Query and one
        BatchGetItem of its workflows' counter shards."""
        state = status.value if status else None
        counts: dict[str, int] | None = None
        series: list[tuple[str, str]] | None
        if search:
            series = self._series_matching(tenant, workflow_id, search)
            count = partial(self._series_counts, tenant, series)
        elif workflow_id:
            counters = self._counter_shards(tenant, [workflow_id])
            counts = sum_counts(counters)
            series = [(workflow_id, name) for name in sorted({n for c in counters for n in c.get("names") or []})]
        else:
            series, count = None, partial(self._tenant_counts, tenant)
        partitions = _partitions(tenant, state, series)
        wanted = offset + limit
        # One row more than the page from each shard tells whether another page follows.
        reads: list[Callable[[], Any]] = [partial(self._newest, index, pk, wanted + 1, after) for index, pk in partitions]
        if counts is None:
            reads.append(count)
        results = in_parallel(reads)
        shard_rows = results[: len(partitions)]
        if counts is None:
            counts = results[-1]
        total = counts[state] if state else sum(counts.values())
        merged = list(heapq.merge(*shard_rows, key=lambda r: r[keys.GSK], reverse=True))
        page = merged[offset:wanted]
        return Page(items=[summary_from(r) for r in page], total=total,
                    next_after=page[-1][keys.GSK] if page and len(merged) > wanted else None)

    def _series_matching(self, tenant: str, workflow_id: str | None, search: str | None) -> list[tuple[str, str]]:
        series = self.series(tenant, workflow_id)
        if search:
            needle = search.casefold()
            series = [(wf, name) for wf, name in series if needle in name.casefold()]
        return series

    def _newest(self, index: keys.Index, partition: str, wanted: int, after: str | None) -> list[dict[str, Any]]:
        """Up to `wanted` rows of one partition, newest first, older than `after`."""
        condition = "#pk = :pk" + (" AND GSK < :after" if after else "")
        values = {":pk": s(partition), **({":after": s(after)} if after else {})}
        request: dict[str, Any] = {
            "TableName": self.runs_table,
            "IndexName": index.name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#pk": index.partition},
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": wanted,
        }
        rows: list[dict[str, Any]] = []
        while True:
            response = self.db.query(**request)
            rows.extend(plain(i) for i in response.get("Items", []))
            if "LastEvaluatedKey" not in response or len(rows) >= wanted:
                return rows[:wanted]
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            request["Limit"] = wanted - len(rows)

    def non_terminal_run_ids(self, tenant: str, workflow_id: str) -> list[str]:
        """Every run of a workflow that has not ended, from the status indexes (Query, no Scan)."""
        partitions = [
            keys.series_status_partition(tenant, wf, name, st.value, shard)
            for wf, name in self.series(tenant, workflow_id)
            for st in NON_TERMINAL
            for shard in range(keys.LIST_SHARDS)
        ]
        found = in_parallel([partial(self._all_ids, keys.BY_SERIES_STATUS, p) for p in partitions])
        return [run_id for ids in found for run_id in ids]

    def _all_ids(self, index: keys.Index, partition: str) -> list[str]:
        rows = self.db.query_all(
            TableName=self.runs_table,
            IndexName=index.name,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": index.partition},
            ExpressionAttributeValues={":pk": s(partition)},
        )
        return [plain(r)["id"] for r in rows]

    def stale_runs(self, created_before: str, limit: int = 500) -> list[StaleRun]:
        """Runs not yet terminal and created before a cutoff, for the reconciler's sweep."""
        found: list[StaleRun] = []
        for shard in range(keys.ACTIVE_SHARDS):
            response = self.db.query(
                TableName=self.runs_table,
                IndexName=keys.ACTIVE.name,
                KeyConditionExpression="#pk = :pk AND GSK < :cut",
                ExpressionAttributeNames={"#pk": keys.ACTIVE.partition},
                ExpressionAttributeValues={":pk": s(keys.active_partition(shard)), ":cut": s(created_before)},
                Limit=limit,
            )
            # The run id is in the table's key, its creation time in the index's sort key
            # (`createdAt#runId`), its class projected.
            for row in map(plain, response.get("Items", [])):
                found.append(StaleRun(run_id=row[keys.PK].removeprefix(keys.run_pk("")),
                                      created_at=row[keys.GSK].split("#", 1)[0],
                                      orchestration=row.get("orchestration") or STANDARD))
        return found


def _partitions(tenant: str, state: str | None, series: list[tuple[str, str]] | None) -> list[tuple[keys.Index, str]]:
    """The index partitions a list reads: every shard of the tenant's (status) list, or of
    each (status) series of a workflow or a search."""
    shards = range(keys.LIST_SHARDS)
    if series is None:
        if state:
            return [(keys.BY_STATUS, keys.status_partition(tenant, state, k)) for k in shards]
        return [(keys.BY_TENANT, keys.tenant_partition(tenant, k)) for k in shards]
    if state:
        return [(keys.BY_SERIES_STATUS, keys.series_status_partition(tenant, wf, name, state, k))
                for wf, name in series for k in shards]
    return [(keys.BY_SERIES, keys.series_partition(tenant, wf, name, k)) for wf, name in series for k in shards]


def sum_counts(shards: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = {st.value: 0 for st in Status}
    for shard in shards:
        for st in Status:
            counts[st.value] += int(shard.get(st.value, 0) or 0)
    return counts


def _summary_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "workflow_id": row["workflowId"],
        "workflow_name": row.get("workflowName"),
        "status": Status(row["status"]),
        "inputs": [RunInput.model_validate(i) for i in json_of(row, "inputs", [])],
        "created_at": row["createdAt"],
        "updated_at": row["updatedAt"],
    }


def summary_from(row: dict[str, Any]) -> WorkflowRunSummary:
    return WorkflowRunSummary(**_summary_fields(row))


def run_from(head: dict[str, Any], activities: list[ActivityRun]) -> WorkflowRun:
    error = json_of(head, "error")
    return WorkflowRun(
        **_summary_fields(head),
        activity_runs=activities,
        error=RunError.model_validate(error) if error else None,
        cancel_reason=head.get("cancelReason"),
        orchestration=head.get("orchestration") or STANDARD,
        retry_of=head.get("retryOf"),
        retried_by=head.get("retriedBy"),
    )


def activity_from(row: dict[str, Any]) -> ActivityRun:
    return ActivityRun(
        id=row["id"],
        step_id=row["stepId"],
        step_name=row.get("stepName"),
        status=Status(row["status"]),
        outputs=json_of(row, "outputs"),
        attempt=row["attempt"],
        created_at=row["createdAt"],
        updated_at=row["updatedAt"],
        reused=bool(row.get("reused")),
    )
