"""`LocalRuntime` on an already running DynamoDB (the session's DynamoDB Local), and with faults."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from workflow_runs.models import WorkflowDefinition
from workflow_runs_dev.dynamodb_local import free_port
from workflow_runs_dev.faults import FaultInjector
from workflow_runs_dev.runtime import LocalRuntime

pytestmark = pytest.mark.dynamodb_local

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORKFLOW = {"name": "Shared", "steps": [{"id": "only", "type": "transform", "config": {"output": "x"}}]}


@pytest.fixture
def tables() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {"RUNS_TABLE": f"runs-{suffix}", "EVENTS_TABLE": f"events-{suffix}"}


@pytest.fixture
def db(dynamodb_local_endpoint: str):
    return boto3.session.Session().client("dynamodb", endpoint_url=dynamodb_local_endpoint)


def runtime_on(endpoint: str, tables: dict[str, str], **options) -> LocalRuntime:
    return LocalRuntime(port=free_port(), internal_port=free_port(), dynamodb_endpoint=endpoint,
                        env={"EXECUTE_WAIT_SECONDS": "0", **tables}, retry_interval_scale=0.001, **options)


@pytest.fixture
def started() -> Iterator[list[LocalRuntime]]:
    runtimes: list[LocalRuntime] = []
    yield runtimes
    for runtime in runtimes:
        runtime.stop()


def test_a_runtime_on_a_running_dynamodb_creates_its_tables_there_and_the_next_reuses_them(
        dynamodb_local_endpoint: str, tables: dict[str, str], db, started: list[LocalRuntime]):
    # Given a runtime started on the running DynamoDB, with tables it does not have yet
    first = runtime_on(dynamodb_local_endpoint, tables).start()
    started.append(first)
    assert (first.db_kind, first.dynamodb_url) == ("external", dynamodb_local_endpoint)
    assert first.tables_created == [tables["RUNS_TABLE"], tables["EVENTS_TABLE"]]
    assert db.describe_table(TableName=tables["RUNS_TABLE"])["Table"]["StreamSpecification"]["StreamEnabled"]

    # When a workflow is put through its API, and it stops
    workflow_id = str(uuid.uuid4())
    headers = {"X-Tenant-Id": "shared"}
    put = httpx.put(f"{first.internal_url}/api/v1/workflows/{workflow_id}", json=WORKFLOW, headers=headers)
    assert put.status_code == 200, put.text
    first.stop()

    # Then the workflow is in that DynamoDB's table, which outlives the runtime …
    assert db.scan(TableName=tables["RUNS_TABLE"], Select="COUNT")["Count"] >= 1
    # … and a second runtime on the same tables reuses them, workflow and all
    second = runtime_on(dynamodb_local_endpoint, tables).start()
    started.append(second)
    assert second.tables_created == []
    got = httpx.get(f"{second.internal_url}/api/v1/workflows/{workflow_id}", headers=headers)
    assert got.status_code == 200 and got.json()["workflow"]["name"] == "Shared"
    run = httpx.post(f"{second.internal_url}/api/v1/workflow-runs/execute", headers=headers,
                     json={"workflowId": workflow_id})
    assert run.status_code in (200, 202), run.text


def test_a_present_table_with_another_layout_stops_the_start_with_a_clear_error(
        dynamodb_local_endpoint: str, tables: dict[str, str], db):
    db.create_table(TableName=tables["RUNS_TABLE"], BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    runtime = runtime_on(dynamodb_local_endpoint, tables)
    with pytest.raises(RuntimeError, match=f"table {tables['RUNS_TABLE']} exists with another layout.*RUNS_TABLE"):
        runtime.start()


def test_a_runtime_starting_in_a_storm_waits_it_out_and_its_faults_leave_with_it(
        dynamodb_local_endpoint: str, tables: dict[str, str], started: list[LocalRuntime]):
    # Given a storm failing every call for the first four seconds (today's runtime stopped at
    # start with "the store is busy"): it starts, examples and all
    faults = FaultInjector(storm_seconds=4.0, seed=1)
    runtime = runtime_on(dynamodb_local_endpoint, tables, faults=faults, examples_dir=EXAMPLES).start()
    started.append(runtime)
    assert runtime.loaded_examples and faults.stats["storm"] >= 1

    # When every transaction conflicts and a workflow is put through the API, Then the store
    # meets the conflicts (the store gives up after its retries and answers 409 or 503)
    faults.conflict_rate = 1.0
    workflow_id = str(uuid.uuid4())
    reply = httpx.put(f"{runtime.internal_url}/api/v1/workflows/{workflow_id}", json=WORKFLOW,
                      headers={"X-Tenant-Id": "faulty"})
    assert reply.status_code in (200, 409, 503), reply.text
    assert faults.stats["conflict_random"] >= 1

    # … and once the runtime has stopped, its client is left alone
    runtime.stop()
    conflicts = faults.stats["conflict_random"]
    assert runtime.store.put_workflow("faulty", workflow_id, WorkflowDefinition.model_validate(WORKFLOW)).version >= 1
    assert faults.stats["conflict_random"] == conflicts


def test_the_pollers_repair_of_an_event_log_is_the_reconcilers_call(
        dynamodb_local_endpoint: str, tables: dict[str, str], started: list[LocalRuntime], tmp_path: Path):
    # In AWS the projector's failed batches reach the reconciler through a queue: its repair's
    # AWS calls are the reconciler's (the IAM evaluation judges them against its role).
    import json

    from workflow_runs_dev import aws_calls

    path = tmp_path / "calls.jsonl"
    recorder = aws_calls.CallRecorder(str(path)).start()
    try:
        runtime = runtime_on(dynamodb_local_endpoint, tables).start()
        started.append(runtime)
        runtime._poller._repair(str(uuid.uuid4()))  # a run it does not know: the repair reads, finds nothing
    finally:
        recorder.stop()
    calls = [json.loads(line) for line in path.read_text().splitlines()]
    # The poller's own stream reads are the projector's (the event source mapping's role); the
    # repair's table reads are the reconciler's.
    table_calls = [c for c in calls if c["operation"].startswith("dynamodb:")]
    assert table_calls and {c["function"] for c in table_calls} == {"reconciler"}, table_calls
