"""What the reliability suites share: the soak switch, runs made through the real store, a
recount of runs against the kept counters, the runs table's stream read back as the list
of status changes that really happened, and quiet collaborators for the step runner."""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from workflow_runs.models import TERMINAL, RunInput, Status, WorkflowDefinition
from workflow_runs.store import NewRun, RunStore

# `make soak` sets SOAK=1: the same tests, longer and wider.
SOAK = os.environ.get("SOAK", "").strip() not in ("", "0", "false", "no")

TENANT = "rel"
QUIET = logging.getLogger("tests.reliability.quiet")  # the step runner's logger in these tests


def soak(fast: Any, long: Any) -> Any:
    return long if SOAK else fast


def workflow(steps: list[dict[str, Any]], name: str = "Reliability", inputs: list[dict] | None = None) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate({"name": name, "inputs": inputs or [], "steps": steps})


TWO_TRANSFORMS = [
    {"id": "first", "name": "First", "type": "transform", "config": {"output": "one"}},
    {"id": "last", "name": "Last", "type": "transform", "config": {"output": "two"}},
]


def put_workflow(store: RunStore, steps: list[dict[str, Any]], name: str = "Reliability") -> str:
    workflow_id = str(uuid.uuid4())
    store.put_workflow(TENANT, workflow_id, workflow(steps, name))
    return workflow_id


def create_run(store: RunStore, workflow_id: str, inputs: dict[str, Any] | None = None) -> str:
    run_id = str(uuid.uuid4())
    wf = store.get_workflow(TENANT, workflow_id)
    store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=wf,
                            inputs=[RunInput(name=k, value=v) for k, v in (inputs or {}).items()]))
    return run_id


@dataclass
class StoppableOrchestrator:
    """The orchestrator port for RunService.cancel when the runner is driven by the test."""

    stopped: list[str] = field(default_factory=list)

    def start(self, run_id: str, orchestration: str = "standard") -> None:  # pragma: no cover - runs are started by the tests
        pass

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = "standard") -> bool:
        self.stopped.append(run_id)
        return True

    def describe(self, run_id: str) -> str | None:
        return "RUNNING"


# ------------------------------------------------------------------ invariants


def recount(store: RunStore, run_ids: list[str]) -> dict[str, int]:
    """Each status's number of runs, counted from the runs themselves (read by id)."""
    counted = Counter(store.get_run_record(run_id).status.value for run_id in run_ids)
    return {s.value: counted.get(s.value, 0) for s in Status}


def assert_counters_match(store: RunStore, workflow_id: str, run_ids: list[str]) -> dict[str, int]:
    """The dashboard's kept counter, the list totals per status (the tenant's and the
    workflow's counters) and a recount of the runs all agree."""
    expected = recount(store, run_ids)
    assert store.counts(TENANT, workflow_id) == expected
    for status in Status:
        page = store.list_runs(TENANT, workflow_id=workflow_id, status=status, limit=1)
        assert page.total == expected[status.value], status
    assert store.list_runs(TENANT, workflow_id=workflow_id, limit=1).total == len(run_ids)
    return expected


def open_activities(store: RunStore, run_id: str) -> list[tuple[str, str, int]]:
    run = store.get_run_record(run_id).run
    return [(a.step_id, a.status.value, a.attempt) for a in run.activity_runs if a.status not in TERMINAL]


def attempts_per_step(store: RunStore, run_id: str) -> dict[str, list[int]]:
    """The attempts recorded for each step: one activity run per attempt, never two."""
    seen: dict[str, list[int]] = {}
    for activity in store.get_run_record(run_id).run.activity_runs:
        seen.setdefault(activity.step_id, []).append(activity.attempt)
    return seen


# ------------------------------------------------------------------ the stream, as history


def streams_client(endpoint_url: str | None) -> Any:
    from workflow_runs_dev.stream_poller import streams_client as make

    return make(endpoint_url)


def stream_records(store: RunStore) -> tuple[str, list[dict[str, Any]]]:
    """Every record on the runs table's DynamoDB stream so far, in order: (stream ARN, records)."""
    client = streams_client(store.settings.dynamodb_endpoint_url)
    arn = client.list_streams(TableName=store.settings.runs_table)["Streams"][0]["StreamArn"]
    shards, start = [], None
    while True:
        request = {"StreamArn": arn, **({"ExclusiveStartShardId": start} if start else {})}
        description = client.describe_stream(**request)["StreamDescription"]
        shards += description.get("Shards", [])
        start = description.get("LastEvaluatedShardId")
        if not start:
            break
    records: list[dict[str, Any]] = []
    for shard in shards:  # listed parents first; a run's records stay in one lineage, in order
        iterator = client.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            response = client.get_records(ShardIterator=iterator, Limit=1000)
            records += response.get("Records", [])
            if not response.get("Records"):
                break  # an open shard never ends: stop at its current end
            iterator = response.get("NextShardIterator")
    return arn, records


def run_status_changes(store: RunStore) -> dict[str, list[tuple[str | None, str]]]:
    """Every status change of every run item, in stream order, read back from the runs
    table's DynamoDB stream: {run_id: [(old, new), …]} (old None for the INSERT).

    This is what really happened in the table, independent of what any writer believed."""
    changes: dict[str, list[tuple[str | None, str]]] = {}
    for record in stream_records(store)[1]:
        item = record["dynamodb"]
        if item["Keys"]["SK"]["S"] != "R" or record["eventName"] == "REMOVE":
            continue
        new = item["NewImage"]["status"]["S"]
        old = item.get("OldImage", {}).get("status", {}).get("S")
        if old != new:
            changes.setdefault(item["Keys"]["PK"]["S"].removeprefix("RUN#"), []).append((old, new))
    return changes


def terminal_moves(changes: list[tuple[str | None, str]]) -> list[str]:
    return [new for _, new in changes if Status(new) in TERMINAL]
