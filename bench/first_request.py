"""One Lambda execution environment, simulated in this interpreter: `python -m
bench.first_request api|step-runner|projector` prints one line `RESULT {json}`.

The environment is set as Lambda sets it (AWS_LAMBDA_FUNCTION_NAME,
AWS_LAMBDA_INITIALIZATION_TYPE=snap-start), so importing the entry module does exactly what
it does in Lambda's init phase (imports, the app, clients, the priming pass). Then the
SnapStart hooks run as Lambda runs them around a snapshot (before, then after a restore:
clients made again, the random generator reseeded), then the first request is timed, then
warm ones (the connection to DynamoDB opened just before the first, and timed apart: see
`open_connection`). Requests reach a DynamoDB Local over HTTP; the runs they need are written
before the init, through the store (which imports some of what the init would: the init
time printed here is not the one to quote, bench/cold_start.py measures that in a clean
interpreter).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

WARM = int(os.environ.get("BENCH_WARM_REQUESTS", "30"))
LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
    "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
    "EXPRESS_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:bench-express",
    "PRIVATE_API_IDS": "benchpriv1",
    "LOCAL_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
}
TENANT = "bench-tenant"
ENTRY = {"api": "workflow_runs_api.handler", "step-runner": "workflow_runs_step_runner.handler",
         "projector": "workflow_runs_stream.projector"}


class Context:
    function_name = "bench"
    function_version = "1"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench:live"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def seed(count: int) -> list[str]:
    """`count` runs of a one-step workflow, scheduled, as the API leaves them."""
    import boto3
    from workflow_runs.models import RunInput, WorkflowDefinition
    from workflow_runs.settings import Settings
    from workflow_runs.store import NewRun, RunStore
    from workflow_runs_dev.dynamodb_local import create_tables

    settings = Settings.from_env()
    client = boto3.client("dynamodb", endpoint_url=settings.dynamodb_endpoint_url)
    create_tables(client, settings.runs_table, settings.events_table)
    store = RunStore(settings, client=client)
    definition = WorkflowDefinition.model_validate({"name": "bench", "inputs": [{"name": "topic", "type": "string"}],
                                                    "steps": [{"id": "a", "type": "transform",
                                                               "config": {"output": "{{ inputs.topic }}!"}}]})
    workflow = store.put_workflow(TENANT, str(uuid.uuid4()), definition)
    ids = []
    for _ in range(count):
        run_id = str(uuid.uuid4())
        store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow,
                                inputs=[RunInput(name="topic", value="tides")]))
        ids.append(run_id)
    _warm_the_server(client, settings, ids[0])
    return ids


def _warm_the_server(client: Any, settings: Any, run_id: str) -> None:
    """DynamoDB Local answers the first statements on a new table slowly (its own warm-up,
    which DynamoDB itself has not): each kind of request once, on both tables, through the
    seeding client (its own connection), so the first request timed is not charged for it."""
    from workflow_runs import keys

    pk = {"S": keys.run_pk(run_id)}
    dummy = {keys.PK: {"S": "bench-warm"}, keys.SK: {"S": "bench-warm"}}
    for table in (settings.runs_table, settings.events_table):
        client.query(TableName=table, KeyConditionExpression=f"{keys.PK} = :pk", ExpressionAttributeValues={":pk": pk})
        client.put_item(TableName=table, Item=dummy)
        client.update_item(TableName=table, Key=dummy, UpdateExpression="SET n = :n",
                           ExpressionAttributeValues={":n": {"N": "1"}})
        client.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": dummy}}])
        client.batch_get_item(RequestItems={table: {"Keys": [dummy]}})
        client.delete_item(TableName=table, Key=dummy)


def requests(subject: str, run_ids: list[str]) -> list[Callable[[], Any]]:
    module = importlib.import_module(ENTRY[subject])  # ← the init phase, as in Lambda
    if subject == "api":
        from bench.request_overhead import rest_event

        def get(run_id: str) -> Callable[[], Any]:
            def call() -> Any:
                reply = module.handler(rest_event(f"/api/v1/workflow-runs/{run_id}"), Context())
                assert reply["statusCode"] == 200, reply
            return call
        return [get(run_id) for run_id in run_ids]
    if subject == "step-runner":
        def step(run_id: str) -> Callable[[], Any]:
            def call() -> Any:
                assert module.handler({"runId": run_id, "attempt": 0}, Context())["next"] == "done"
            return call
        return [step(run_id) for run_id in run_ids]

    from workflow_runs import keys

    def project(index: int, run_id: str) -> Callable[[], Any]:
        key = {keys.PK: {"S": keys.run_pk(run_id)}, keys.SK: {"S": keys.RUN_SK}}
        record = {"eventID": str(index), "eventName": "MODIFY", "eventSource": "aws:dynamodb",
                  "dynamodb": {"Keys": key, "SequenceNumber": str(1000 + index), "ApproximateCreationDateTime": time.time(),
                               "NewImage": {**key, "status": {"S": "running"}, "tenant": {"S": TENANT}},
                               "OldImage": {**key, "status": {"S": "scheduled"}, "tenant": {"S": TENANT}}}}

        def call() -> Any:
            assert module.handler({"Records": [record]}, Context()) == {"batchItemFailures": []}
        return call
    return [project(i, run_id) for i, run_id in enumerate(run_ids)]


def open_connection(subject: str) -> float:
    """A connection cannot be in a snapshot (nothing connection-bound is kept across one), so
    the first request after a restore opens one whatever the init did: TCP here, TCP and TLS
    to DynamoDB. That is the network's cost, not the init's: it is opened here (ListTables,
    through the function's own client) and timed apart, so the first request's figure shows
    what the init phase leaves to it."""
    if subject == "api":
        from workflow_runs_http.dependencies import _default_service

        client = _default_service().store.client
    elif subject == "step-runner":
        from workflow_runs_step_runner.handler import collaborators

        client = collaborators()["store"].client
    else:
        from workflow_runs_stream.projector import _default_store

        client = _default_store().client
    began = time.perf_counter()
    client.list_tables(Limit=1)
    return time.perf_counter() - began


def _warm_the_server_paths(subject: str, run_ids: list[str]) -> None:
    """DynamoDB Local is a JVM: the first request down each of its code paths (a
    transaction with conditions on a table with indexes, a query of one partition) runs
    interpreted and waits for its JIT, a cost DynamoDB itself does not have and our init
    cannot take. As many requests of the subject's kind as are timed warm, on runs of their
    own, from another interpreter (this one must stay cold), take that cost before the init
    is timed."""
    import subprocess  # noqa: PLC0415

    subprocess.run([sys.executable, "-m", "bench.first_request", subject, "--warm-server", *run_ids],
                   check=True, env=os.environ.copy(), stdout=subprocess.DEVNULL)


def main(subject: str) -> None:
    """Against the DynamoDB Local at DYNAMODB_ENDPOINT_URL (fresh tables of this process's
    own), as the function would reach DynamoDB: over HTTP, its first request opening the
    connection. (moto in-process copies whole tables on every transaction: its time grows
    with the table and drowns what is measured here.)"""
    os.environ.update(LAMBDA_ENV)
    suffix = uuid.uuid4().hex[:8]
    os.environ["RUNS_TABLE"] = f"bench-runs-{suffix}"
    os.environ["EVENTS_TABLE"] = f"bench-events-{suffix}"
    if not os.environ.get("DYNAMODB_ENDPOINT_URL"):
        raise SystemExit("DYNAMODB_ENDPOINT_URL must name a running DynamoDB Local")
    run_ids = seed(2 * WARM + 1)
    _warm_the_server_paths(subject, run_ids[WARM + 1:])
    del run_ids[WARM + 1:]
    started = time.perf_counter()
    calls = requests(subject, run_ids)
    init = time.perf_counter() - started
    from workflow_runs import telemetry

    telemetry.simulate_snapshot_and_restore()
    connect = open_connection(subject)
    timings = []
    for call in calls:
        began = time.perf_counter()
        call()
        timings.append(time.perf_counter() - began)
    sys.stdout.flush()
    print("RESULT " + json.dumps({"init": init, "connect": connect, "first": timings[0], "warm": timings[1:]}))


if __name__ == "__main__":
    if sys.argv[2:3] == ["--warm-server"]:  # the child of _warm_the_server_paths
        for warm_call in requests(sys.argv[1], sys.argv[3:]):
            warm_call()
    else:
        main(sys.argv[1])
