"""3. DynamoDB requests and consumed capacity, on DynamoDB Local, per API endpoint and per run
of an N-step transform workflow (the real step runner driven as the state machine drives it,
and the real projector fed the run's stream records).

Counting is done by botocore hooks on the clients under test (`bench.meter`), which also
inject `ReturnConsumedCapacity=TOTAL`, so DynamoDB Local reports the capacity it accounts
(index writes included; transactions at four units per KB, twice what AWS bills: section 7,
bench/scale.py, bills by AWS's rules)."""

from __future__ import annotations

import base64
import contextlib
import os
import statistics
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workflow_runs.keys import LIST_SHARDS

from . import Figure, SectionResult, md_table
from .meter import RequestMeter, Snapshot, capacity

ROOT = Path(__file__).resolve().parents[1]
TENANT = "bench"
RUNS = "/api/v1/workflow-runs"
STEP_COUNTS = (1, 3, 10)


class NullOrchestrator:
    """Starts nothing: runs created through it stay `scheduled` (for list, get, cancel)."""

    def start(self, run_id: str, orchestration: str = "standard") -> None:
        pass

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = "standard") -> bool:
        return False

    def describe(self, run_id: str) -> str | None:
        return None


def client(endpoint_url: str) -> Any:
    """A client configured as the store's own factory configures it."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=64)
    return boto3.session.Session().client("dynamodb", endpoint_url=endpoint_url, config=config)


def fresh_settings(endpoint_url: str, **overrides: Any):
    from workflow_runs.settings import Settings

    suffix = uuid.uuid4().hex[:8]
    return Settings(runs_table=f"bench-runs-{suffix}", events_table=f"bench-events-{suffix}",
                    dynamodb_endpoint_url=endpoint_url,
                    local_secret_key=base64.b64encode(os.urandom(32)).decode(), **overrides)


def transform_workflow(steps: int):
    from workflow_runs.models import WorkflowDefinition

    body = [{"id": "s0", "type": "transform", "config": {"output": {"text": "Hello, {{ inputs.name }}!"}}}]
    body += [{"id": f"s{i}", "type": "transform",
              "config": {"output": {"text": f"{{{{ steps.s{i - 1}.outputs.text | upper }}}}"}}}
             for i in range(1, steps)]
    return WorkflowDefinition.model_validate({
        "name": f"Transform x{steps}", "inputs": [{"name": "name", "type": "string", "default": "world"}],
        "steps": body})


def example_workflow():
    import yaml
    from workflow_runs.models import WorkflowDefinition

    document = yaml.safe_load((ROOT / "examples" / "three-step-transform.yaml").read_text())
    workflow_id = document.pop("id")
    return workflow_id, WorkflowDefinition.model_validate(document)


def drive(run_id: str, settings: Any, store: Any, meter: RequestMeter) -> list[Snapshot]:
    """Invoke the step runner as the state machine does (RunStep until `next` is not `step`);
    the requests of each invocation."""
    from workflow_runs_step_runner.handler import LazySealer
    from workflow_runs_step_runner.runner import run_step

    sealer = LazySealer(settings)
    per_invocation = []
    while True:
        before = meter.snapshot()
        reply = run_step({"runId": run_id, "attempt": 0}, settings=settings, store=store, sealer=sealer)
        per_invocation.append(meter.snapshot() - before)
        if reply["next"] != "step":
            if reply["next"] != "done":
                raise RuntimeError(f"the run ended {reply}")
            return per_invocation


SHARED_ENDPOINT = "BENCH_DYNAMODB_ENDPOINT"  # set by `python -m bench`: one DynamoDB Local for all sections


@contextlib.contextmanager
def dynamodb_endpoint() -> Iterator[str]:
    """The DynamoDB Local the parent started, or one of our own (a section run alone)."""
    from workflow_runs_dev import dynamodb_local

    for name, value in dynamodb_local.DUMMY_CREDENTIALS.items():
        os.environ[name] = value
    if os.environ.get(SHARED_ENDPOINT):
        yield os.environ[SHARED_ENDPOINT]
        return
    db = dynamodb_local.start_dynamodb_local()
    try:
        yield db.endpoint_url
    finally:
        db.stop()


def run(quick: bool) -> SectionResult:
    with dynamodb_endpoint() as endpoint:
        return _measure(endpoint, quick)


def _measure(endpoint: str, quick: bool) -> SectionResult:
    import logging

    logging.disable(logging.WARNING)  # the runner's structured logs are not the subject
    from fastapi.testclient import TestClient
    from workflow_runs.service import ExecuteRequest, RunService
    from workflow_runs.store import RunStore
    from workflow_runs_api.app import create_app
    from workflow_runs_dev import dynamodb_local
    from workflow_runs_dev.orchestrator import LocalOrchestrator

    repeats = 1 if quick else 5
    settings = fresh_settings(endpoint, execute_wait_seconds=20.0)
    setup_client, api_client, runner_client = client(endpoint), client(endpoint), client(endpoint)
    dynamodb_local.create_tables(setup_client, settings.runs_table, settings.events_table)
    setup = RunService(RunStore(settings, client=setup_client), NullOrchestrator(), settings)
    api_store, runner_store = RunStore(settings, client=api_client), RunStore(settings, client=runner_client)
    api_meter, runner_meter = RequestMeter(api_client), RequestMeter(runner_client)
    orchestrator = LocalOrchestrator(settings=settings, store=runner_store)
    app = create_app(settings=settings, service=RunService(api_store, orchestrator, settings), internal_listener=True)
    http = TestClient(app, headers={"X-Tenant-Id": TENANT})

    workflow_id, definition = example_workflow()
    setup.put_workflow(TENANT, workflow_id, definition)
    scheduled = [setup.start_run(TENANT, ExecuteRequest(workflow_id=workflow_id)).id for _ in range(3 + 2 * repeats)]

    def measure(label: str, call, times: int = repeats) -> Snapshot:
        call()  # warm: connections, caches
        samples = []
        for _ in range(times):
            before = api_meter.snapshot()
            response = call()
            assert response.status_code < 300, (label, response.status_code, response.text[:300])
            samples.append(api_meter.snapshot() - before)
        return _mean(samples)

    rows: list[list[Any]] = []
    figures: list[Figure] = []

    def record(label: str, snap: Snapshot, target: str = "—", holds: bool | None = None, note: str = "") -> None:
        rows.append([label, f"{snap.requests:g}", snap.describe(), capacity(snap), target,
                     {True: "holds", False: "MISSED", None: "—"}[holds]])
        if holds is not None:
            figures.append(Figure(f"DynamoDB requests, {label}", f"{snap.requests:g} ({snap.describe()})", target,
                                  holds, note))

    get = measure("get", lambda: http.get(f"{RUNS}/{scheduled[0]}"))
    record("`GET /{runId}`", get, "1 request", get.requests == 1)
    dashboard = measure("dashboard", lambda: http.get(f"{RUNS}/dashboard/{workflow_id}"))
    record("`GET /dashboard/{workflowId}`", dashboard, "1 request", dashboard.requests == 1)
    for label, params in [("`GET /` (list)", {}), ("`GET /?status=scheduled`", {"status": "scheduled"}),
                          ("`GET /?workflowId=…&page=2&limit=2`", {"workflowId": workflow_id, "page": 2, "limit": 2})]:
        snap = measure(label, lambda params=params: http.get(RUNS, params=params))
        # The list is write-sharded (workflow_runs/keys.py): one Query per shard, in parallel,
        # beside its counts: a workflow's counter shards (one BatchGetItem), or for the
        # tenant's whole list its series (one Query) and its workflows' counter shards.
        holds = snap.calls.get("Query", 0) <= LIST_SHARDS + 1 and snap.requests <= 2 + LIST_SHARDS
        record(label, snap, f"≤ 2 + {LIST_SHARDS} shards, in parallel", holds)
    search = measure("search", lambda: http.get(RUNS, params={"search": "three"}))
    record("`GET /?search=three` (1 name matches)", search)

    # Cancel: a scheduled run, and a run with its step in flight (one open activity to close).
    cancel_ids = iter(scheduled[3:])
    cancel = measure("cancel", lambda: http.post(f"{RUNS}/cancel", json={"runIds": [next(cancel_ids)]}),
                     times=repeats - 1 if repeats > 1 else 1)
    record("`POST /cancel` (1 scheduled run)", cancel)
    mid_step = [_run_mid_step(setup.store, workflow_id, definition) for _ in range(repeats + 1)]
    in_flight = iter(mid_step)
    cancel_open = measure("cancel mid-step", lambda: http.post(f"{RUNS}/cancel", json={"runIds": [next(in_flight)]}))
    record("`POST /cancel` (1 run, its step in flight)", cancel_open)

    # Execute (blocking): the API's own requests, then the step runner's for that run.
    executes: list[tuple[Snapshot, Snapshot]] = []
    for i in range(repeats + 1):
        before_api, before_runner = api_meter.snapshot(), runner_meter.snapshot()
        response = http.post(f"{RUNS}/execute", json={"workflowId": workflow_id})
        assert response.status_code == 200, response.text[:300]
        run_id = response.json()["workflowRun"]["id"]
        orchestrator.join(run_id, timeout=30)
        if i:  # the first one warms the runner's connections
            executes.append((api_meter.snapshot() - before_api, runner_meter.snapshot() - before_runner))
    execute_api = _mean([a for a, _ in executes])
    execute_runner = _mean([r for _, r in executes])
    polls = execute_api.calls.get("GetItem", 0) - 1  # one GetItem reads the workflow
    record("`POST /execute` (3-step example), API side", execute_api,
           note=f"{polls:g} of them are status polls while the run runs")
    record("… the same run, step runner side", execute_runner)
    orchestrator.shutdown()

    result = SectionResult(
        "dynamodb",
        "3. DynamoDB requests and consumed capacity",
        method=(
            "DynamoDB Local (started by `workflow_runs_dev.dynamodb_local.start_dynamodb_local()`), fresh tables. "
            "botocore hooks on the client under test count requests per operation and inject "
            "`ReturnConsumedCapacity=TOTAL` (`provide-client-params`), so the capacity is what DynamoDB reports. "
            "Endpoints go through the real API app (FastAPI `TestClient`, internal-listener identity) with its "
            "own counted client; each is called once to warm up, then "
            f"{repeats}× (mean shown). `POST /execute` runs the example 3-step transform through the local "
            "orchestrator and the real step runner on a second counted client. Per run: an N-step transform "
            "workflow on fresh tables, the step runner (`run_step`) invoked as the state machine invokes it, then "
            "the real projector fed the tables' stream records by the local stream poller, on a third client."
        ),
    )
    result.tables.append("Per endpoint (mean per request):\n\n" + md_table(
        ["endpoint", "requests", "operations", "consumed", "target", ""], rows))

    run_rows = []
    write_units: dict[int, float] = {}
    for steps in STEP_COUNTS:
        per_step, projector_snap, events = _one_run(endpoint, steps, runner_client, runner_meter)
        total = _sum(per_step)
        writes = [s.writes for s in per_step]
        mean_writes = statistics.mean(writes)
        worst = max(writes)
        run_rows.append([steps, len(per_step), f"{total.requests}", total.describe(), capacity(total),
                         f"{mean_writes:.2f} (max {worst})", f"{events} events: {projector_snap.describe()}",
                         capacity(projector_snap)])
        write_units[steps] = total.write_units
        figures.append(Figure(f"writes per step besides events, {steps}-step run",
                              f"max {worst}, mean {mean_writes:.2f} ({total.writes} writes in {steps} steps)",
                              "≤ 3 per step", worst <= 3))
    result.tables.append(
        "Per run of an N-step transform workflow (step runner; events are the projector's):\n\n" + md_table(
            ["N", "invocations", "requests", "operations", "consumed", "writes per step", "projector",
             "projector consumed"], run_rows))
    result.figures = figures
    if len(write_units) >= 2:
        (n1, w1), (n2, w2) = sorted(write_units.items())[-2:]
        per_step = (w2 - w1) / (n2 - n1)
        first = min(write_units)
        result.notes.append(
            f"Capacity as DynamoDB Local reports it: a step adds ≈ {per_step:.0f} units, a run ≈ "
            f"{write_units[first] - first * per_step:.0f} besides its steps. DynamoDB Local bills a transactional "
            "write at four units per KB where AWS bills two, so these figures are not AWS's: section 7 bills every "
            "write by AWS's documented rules, per partition key, from the items really written.")
    if any(f.holds is False and "writes per step" in f.name for f in figures):
        result.notes.append(
            "Writes per step: a step writes its activity `running` (with the run's move to `running` in the same "
            "transaction) and its end; the run's end is a write of its own after the last step's, so the stream "
            "carries them in that order (docs/decisions.md). Anything above 3 comes from a new write added to "
            "runner.py: count them with tests/unit/step_runner/test_runner.py.")
    for figure in figures:
        if figure.holds is False and "DynamoDB requests" in figure.name:
            result.notes.append(f"{figure.name}: {figure.value} — see the per-endpoint table for the operations.")
    return result


def _run_mid_step(store: Any, workflow_id: str, definition: Any) -> str:
    """A run whose first step is running (its activity open)."""
    from workflow_runs.models import ActivityRun, RunInput, Status, Workflow, utc_now
    from workflow_runs.store import NewRun

    workflow = store.get_workflow(TENANT, workflow_id)
    assert isinstance(workflow, Workflow)
    run_id = str(uuid.uuid4())
    record, _ = store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow,
                                        inputs=[RunInput(name="name", value="x"), RunInput(name="times", value=2)]))
    record = store.transition_run(record, Status.RUNNING)
    now = utc_now()
    store.put_activity(run_id, 0, ActivityRun(id=str(uuid.uuid4()), step_id=definition.steps[0].id, step_name=None,
                                              status=Status.RUNNING, attempt=1, created_at=now, updated_at=now))
    return run_id


def _one_run(endpoint: str, steps: int, runner_client: Any, runner_meter: RequestMeter):
    from workflow_runs.models import RunInput
    from workflow_runs.store import NewRun, RunStore
    from workflow_runs_dev import dynamodb_local
    from workflow_runs_dev.stream_poller import StreamPoller
    from workflow_runs_stream import projector

    settings = fresh_settings(endpoint)
    setup_client = client(endpoint)
    dynamodb_local.create_tables(setup_client, settings.runs_table, settings.events_table)
    setup_store = RunStore(settings, client=setup_client)
    workflow = setup_store.put_workflow(TENANT, str(uuid.uuid4()), transform_workflow(steps))
    run_id = str(uuid.uuid4())
    setup_store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow,
                                  inputs=[RunInput(name="name", value="world")]))
    per_step = drive(run_id, settings, RunStore(settings, client=runner_client), runner_meter)

    projector_client = client(endpoint)
    projector_meter = RequestMeter(projector_client)
    projector_store = RunStore(settings, client=projector_client)
    poller = StreamPoller(settings, lambda batch, context: projector.handler(batch, context, store=projector_store))
    with poller:
        if not poller.wait_idle(timeout=30):
            raise RuntimeError("the stream poller did not catch up")
    events = len(setup_store.events_after(run_id, None, limit=1000))
    return per_step, projector_meter.snapshot(), events


def _sum(snaps: list[Snapshot]) -> Snapshot:
    total = Snapshot()
    for snap in snaps:
        total.calls.update(snap.calls)
        total.read_units += snap.read_units
        total.write_units += snap.write_units
        total.seconds += snap.seconds
    return total


def _mean(snaps: list[Snapshot]) -> Snapshot:
    total = _sum(snaps)
    n = len(snaps)
    mean = Snapshot(read_units=total.read_units / n, write_units=total.write_units / n, seconds=total.seconds / n)
    for op, count in total.calls.items():
        mean.calls[op] = count / n
    return mean
