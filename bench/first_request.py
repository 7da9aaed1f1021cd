"""One Lambda execution environment, simulated in this interpreter: `python -m
bench.first_request SUBJECT [TRANSPORT] [--busy S] [--answers FILE]` prints one line
`RESULT {json}`.

The environment is set as Lambda sets it for a SnapStart function (AWS_LAMBDA_FUNCTION_NAME,
AWS_LAMBDA_INITIALIZATION_TYPE=snap-start, credentials from a container credentials endpoint
— served here — instead of keys in the environment), so importing the entry module does
exactly what it does in Lambda's init phase (imports, the app, clients, the rehearsals).
Then the SnapStart hooks run as Lambda runs them around a snapshot, then the first request
is timed, then warm ones. Two transports:

- `dynamodb-local` (the default): requests reach a DynamoDB Local over HTTP, the connection
  opened just before the first and timed apart (see `open_connection`).
- `in-process`: nothing is seeded and nothing reaches DynamoDB Local; every DynamoDB call is
  answered in this process with the answer DynamoDB Local gave to the same request on the
  same run (recorded from another interpreter by a `dynamodb-local` sample's server warm-up,
  saved with `--answers`): what is timed is the function's own code, nothing else.

SUBJECT `boto3` is the control: a bare client already warmed by real requests, then kept
busy for `--busy` seconds (as long as a function's init takes) with work of no interest to it,
then timed the same way, so the report shows what the machine and DynamoDB Local charge a
first request with nothing left to warm. In-process, its Queries are answered with the api's
recorded ones (`--answers` of an api sample): what is left is what this machine charges a code
path it has not run for as long as an init takes, with no server in it. The runs the requests need are written before the init, through the store
(which imports some of what the init would: the init time printed here is not the one to
quote, bench/cold_start.py measures that in a clean interpreter).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.request_overhead import rest_event  # the harness's own imports, all before the init

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
TRANSPORTS = ("dynamodb-local", "in-process")


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
    """`count` runs, scheduled, as the API leaves them, each of a one-step workflow of its
    own (its own template text too): what a function caches per workflow version (its
    steps, its compiled templates) is then filled by every request alike, the first and the
    warm ones, not by the first for all the others."""
    import boto3
    from workflow_runs.models import RunInput, WorkflowDefinition
    from workflow_runs.settings import Settings
    from workflow_runs.store import NewRun, RunStore
    from workflow_runs_dev.dynamodb_local import create_tables

    settings = Settings.from_env()
    client = boto3.client("dynamodb", endpoint_url=settings.dynamodb_endpoint_url)
    create_tables(client, settings.runs_table, settings.events_table)
    store = RunStore(settings, client=client)
    ids = []
    for index in range(count):
        definition = WorkflowDefinition.model_validate({
            "name": f"bench-{index}", "inputs": [{"name": "topic", "type": "string"}],
            "steps": [{"id": "a", "type": "transform", "config": {"output": f"{{{{ inputs.topic }}}}!{index}"}}]})
        workflow = store.put_workflow(TENANT, str(uuid.uuid4()), definition)
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
    if subject == "boto3":
        return _bare_queries(run_ids)
    module = importlib.import_module(ENTRY[subject])  # ← the init phase, as in Lambda
    # Each request's event and context are made here, untimed: Lambda's runtime hands them over.
    if subject == "api":
        def get(run_id: str) -> Callable[[], Any]:
            event, context = rest_event(f"/api/v1/workflow-runs/{run_id}"), Context()

            def call() -> Any:
                reply = module.handler(event, context)
                assert reply["statusCode"] == 200, reply
            return call
        return [get(run_id) for run_id in run_ids]
    if subject == "step-runner":
        def step(run_id: str) -> Callable[[], Any]:
            event, context = {"runId": run_id, "attempt": 0}, Context()

            def call() -> Any:
                assert module.handler(event, context)["next"] == "done"
            return call
        return [step(run_id) for run_id in run_ids]

    from workflow_runs import keys

    def project(index: int, run_id: str) -> Callable[[], Any]:
        key = {keys.PK: {"S": keys.run_pk(run_id)}, keys.SK: {"S": keys.RUN_SK}}
        record = {"eventID": str(index), "eventName": "MODIFY", "eventSource": "aws:dynamodb",
                  "dynamodb": {"Keys": key, "SequenceNumber": str(1000 + index), "ApproximateCreationDateTime": time.time(),
                               "NewImage": {**key, "status": {"S": "running"}, "tenant": {"S": TENANT}},
                               "OldImage": {**key, "status": {"S": "scheduled"}, "tenant": {"S": TENANT}}}}
        event, context = {"Records": [record]}, Context()

        def call() -> Any:
            assert module.handler(event, context) == {"batchItemFailures": []}
        return call
    return [project(i, run_id) for i, run_id in enumerate(run_ids)]


_bare: list[Any] = []


def _bare_queries(run_ids: list[str]) -> list[Callable[[], Any]]:
    """The control: a bare boto3 client (no code of ours), warmed by real Queries of the
    run's partition on runs of its own, then closed down to no connection, as a restored
    function's client is."""
    import boto3
    from workflow_runs import keys

    client = boto3.client("dynamodb", endpoint_url=os.environ["DYNAMODB_ENDPOINT_URL"])
    _bare[:] = [client]
    if _control["answers"]:  # in-process: its warm-up answered as its requests will be
        answer_in_process(client, [dict(answer) for answer in _control["answers"]])

    def query(run_id: str) -> Callable[[], Any]:
        def call() -> Any:
            found = client.query(TableName=os.environ["RUNS_TABLE"], KeyConditionExpression="PK = :pk AND begins_with(SK, :r)",
                                 ExpressionAttributeValues={":pk": {"S": keys.run_pk(run_id)}, ":r": {"S": keys.RUN_SK}},
                                 ConsistentRead=True)
            assert found["Items"], run_id
        return call
    for warm_up in (query(run_id) for run_id in _control["warm_up_ids"]):
        warm_up()
    _busy(_control["busy_seconds"])
    client._endpoint.http_session.close()  # as the SnapStart hooks leave it
    return [query(run_id) for run_id in run_ids]


# The control's settings: the runs its client is warmed on, how long it stays busy after (a
# function's init keeps its process busy, and DynamoDB Local waiting, that long) and, in-process,
# the recorded answers its warm-up is given.
_control: dict[str, Any] = {"warm_up_ids": [], "busy_seconds": 0.0, "answers": []}


def _busy(seconds: float) -> None:
    """Keep this process busy with work of no interest to the requests for `seconds`."""
    deadline = time.perf_counter() + seconds
    sample = {"items": [{"id": str(i), "values": list(range(20))} for i in range(50)]}
    while time.perf_counter() < deadline:
        json.loads(json.dumps(sample))


def function_client(subject: str) -> Any:
    """The DynamoDB client the subject's requests go through."""
    if subject == "boto3":
        return _bare[0]
    if subject == "api":
        from workflow_runs_http.dependencies import _default_service

        return _default_service().store.client
    if subject == "step-runner":
        from workflow_runs_step_runner.handler import collaborators

        return collaborators()["store"].client
    from workflow_runs_stream.projector import _default_store

    return _default_store().client


def open_connection(subject: str) -> float:
    """A connection cannot be in a snapshot (nothing connection-bound is kept across one), so
    the first request after a restore opens one whatever the init did: TCP here, TCP and TLS
    to DynamoDB. That is the network's cost, not the init's: it is opened here (ListTables,
    through the function's own client) and timed apart, so the first request's figure shows
    what the init phase leaves to it."""
    client = function_client(subject)
    began = time.perf_counter()
    client.list_tables(Limit=1)
    return time.perf_counter() - began


# ------------------------------------------------------------------ answers, recorded and replayed


@contextmanager
def recording(client: Any, into: list[dict[str, Any]]) -> Iterator[None]:
    """Every DynamoDB answer `client` receives inside, appended to `into` as sent on the wire."""
    def record(response_dict: Any = None, event_name: str = "", **_: Any) -> None:
        if response_dict is not None:
            into.append({"operation": event_name.rsplit(".", 1)[-1], "status": response_dict["status_code"],
                         "headers": dict(response_dict["headers"]), "body": response_dict["body"].decode()})

    client.meta.events.register("response-received.dynamodb", record, unique_id="bench-recording")
    try:
        yield
    finally:
        client.meta.events.unregister("response-received.dynamodb", unique_id="bench-recording")


def answer_in_process(client: Any, queue: list[dict[str, Any]]) -> None:
    """From now on `client`'s DynamoDB calls are answered from `queue`, in order, each with
    the operation it was recorded for: nothing is sent. In place of the client's HTTP
    session, so everything above the network runs as it would (no event handler is added:
    that would empty botocore's handler lookup cache, a cost the function would not have)."""
    from workflow_runs.store.rehearsal import operation_of, response

    class Replay:
        @staticmethod
        def send(request: Any) -> Any:
            recorded = queue.pop(0)
            assert recorded["operation"] == operation_of(request), f"recorded {recorded['operation']}"
            return response(request.url, recorded["body"].encode(), recorded["status"], recorded["headers"])

        @staticmethod
        def close() -> None:
            pass

    client._endpoint.http_session = Replay()  # the one thing that would send


def _warm_the_server_paths(subject: str, run_ids: list[str], answers_file: str) -> None:
    """DynamoDB Local is a JVM: the first request down each of its code paths (a
    transaction with conditions on a table with indexes, a query of one partition) runs
    interpreted and waits for its JIT, a cost DynamoDB itself does not have and our init
    cannot take. As many requests of the subject's kind as are timed, on runs of their own,
    from another interpreter (this one must stay cold), take that cost before the init is
    timed; the answers they got are recorded in `answers_file`, one list per request, for
    the in-process transport."""
    import subprocess

    subprocess.run([sys.executable, "-m", "bench.first_request", subject, "--warm-server", answers_file, *run_ids],
                   check=True, env=os.environ.copy(), stdout=subprocess.DEVNULL)


def _warm_server_child(subject: str, answers_file: str, run_ids: list[str]) -> None:
    calls = requests(subject, run_ids)
    client = function_client(subject)
    answers: list[list[dict[str, Any]]] = []
    for call in calls:
        answers.append([])
        with recording(client, answers[-1]):
            call()
    with open(answers_file, "w", encoding="utf-8") as out:
        json.dump(answers, out)


# ------------------------------------------------------------------ one environment


def main(subject: str, transport: str = "dynamodb-local", busy_seconds: float = 0.0,
         answers_path: str | None = None) -> None:
    """Over DynamoDB Local (at DYNAMODB_ENDPOINT_URL, fresh tables of this process's own), as
    the function would reach DynamoDB: over HTTP, its first request opening the connection;
    the answers the server-warming child got are saved at `answers_path`, with its runs and
    tables. In-process: nothing is seeded and nothing reaches DynamoDB Local, every call is
    answered from `answers_path` (the same requests on the same runs and tables). (moto
    in-process copies whole tables on every transaction: its time grows with the table and
    drowns what is measured here.) `busy_seconds`: the control's busy time between its
    warm-up and its first request."""
    os.environ.update(LAMBDA_ENV)
    if not os.environ.get("DYNAMODB_ENDPOINT_URL"):
        raise SystemExit("DYNAMODB_ENDPOINT_URL must name a running DynamoDB Local")
    if transport not in TRANSPORTS:
        raise SystemExit(f"transport must be one of {TRANSPORTS}")
    if transport == "in-process":
        if not answers_path:
            raise SystemExit("the in-process transport replays the answers of a dynamodb-local sample: --answers")
        with open(answers_path, encoding="utf-8") as saved:
            recorded = json.load(saved)
        os.environ.update(RUNS_TABLE=recorded["runs_table"], EVENTS_TABLE=recorded["events_table"])
        run_ids, answers = recorded["run_ids"], recorded["answers"]
        if subject == "boto3":  # the control replays the api's Queries: one per request, the run's partition
            _control.update(warm_up_ids=run_ids, busy_seconds=busy_seconds,
                            answers=[answer for asked in answers for answer in asked])
    else:
        run_ids, answers = _seed_and_warm(subject, busy_seconds, answers_path)
    from workflow_runs_dev import container_credentials

    with container_credentials.served():
        started = time.perf_counter()
        calls = requests(subject, run_ids)
        init = time.perf_counter() - started
        from workflow_runs import telemetry

        telemetry.simulate_snapshot_and_restore()
        queue: list[dict[str, Any]] = []
        if transport == "in-process":
            answer_in_process(function_client(subject), queue)
            connect = 0.0
        else:
            connect = open_connection(subject)
        timings = []
        for index, call in enumerate(calls):
            queue[:] = answers[index] if transport == "in-process" else []
            began = time.perf_counter()
            call()
            timings.append(time.perf_counter() - began)
            assert not queue, f"request {index} left {len(queue)} recorded answers unasked"
    sys.stdout.flush()
    print("RESULT " + json.dumps({"init": init, "connect": connect, "first": timings[0], "warm": timings[1:]}))


def _seed_and_warm(subject: str, busy_seconds: float, answers_path: str | None) -> tuple[list[str], list[Any]]:
    """Fresh tables and runs; the server warmed down the subject's paths from another
    interpreter, its answers recorded (and saved at `answers_path` with its runs and
    tables, for an in-process sample). Returns the runs to time and those answers."""
    import tempfile

    suffix = uuid.uuid4().hex[:8]
    os.environ["RUNS_TABLE"] = f"bench-runs-{suffix}"
    os.environ["EVENTS_TABLE"] = f"bench-events-{suffix}"
    run_ids = seed(3 * WARM + 3)
    warmed = run_ids[WARM + 1:2 * WARM + 2]
    with tempfile.TemporaryDirectory() as folder:
        answers_file = os.path.join(folder, "answers.json")
        _warm_the_server_paths("api" if subject == "boto3" else subject, warmed, answers_file)
        with open(answers_file, encoding="utf-8") as recorded:
            answers: list[list[dict[str, Any]]] = json.load(recorded)
    if answers_path:
        with open(answers_path, "w", encoding="utf-8") as out:
            json.dump({"runs_table": os.environ["RUNS_TABLE"], "events_table": os.environ["EVENTS_TABLE"],
                       "run_ids": warmed, "answers": answers}, out)
    _control.update(warm_up_ids=run_ids[2 * WARM + 2:], busy_seconds=busy_seconds)
    return run_ids[:WARM + 1], answers


def _arguments() -> Any:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.first_request")
    parser.add_argument("subject", choices=[*ENTRY, "boto3"])
    parser.add_argument("transport", nargs="?", default="dynamodb-local", choices=TRANSPORTS)
    parser.add_argument("--busy", type=float, default=0.0, help="the control's busy seconds after its warm-up")
    parser.add_argument("--answers", help="where a dynamodb-local sample saves its recorded answers, "
                                          "and an in-process sample reads them")
    return parser.parse_args()


if __name__ == "__main__":
    if sys.argv[2:3] == ["--warm-server"]:  # the child of _warm_the_server_paths
        _warm_server_child(sys.argv[1], sys.argv[3], sys.argv[4:])
    else:
        arguments = _arguments()
        main(arguments.subject, arguments.transport, arguments.busy, arguments.answers)
