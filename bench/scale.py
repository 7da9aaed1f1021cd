"""7. Scale: write units per run and per partition key, the tenant's ceiling, list pages at
depth, and a cost model priced from the measured counts.

Runs of an N-step transform workflow go through the real service (`RunService.start_run`),
the real step runner (driven as the state machine drives it) and the real projector (fed
the table's stream by the local stream poller), on DynamoDB Local. `bench.units.UnitMeter`
bills every write and read as AWS documents it, per partition key, from the items really
written. Step Functions state transitions are counted by running the real ASL under moto's
interpreter (section 4's harness). Lambda durations are measured in-process here, so they
are this machine's, not Lambda's: the cost model says so.
"""

from __future__ import annotations

import logging
import re
import statistics
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import Figure, SectionResult, md_table
from .dynamodb_cost import TENANT, NullOrchestrator, client, dynamodb_endpoint, fresh_settings, transform_workflow
from .prices import EXPRESS_BILLED_MB, EXPRESS_DURATION_GRANULARITY_SECONDS, PRICES

STEP_COUNTS = (1, 3, 10)
CEILING_UNITS_PER_SECOND = 1000  # one partition's write limit (on-demand and provisioned)


def run(quick: bool) -> SectionResult:
    logging.disable(logging.WARNING)
    with dynamodb_endpoint() as endpoint:
        return _measure(endpoint, quick)


def _measure(endpoint: str, quick: bool) -> SectionResult:
    from .state_transitions import count_states

    result = SectionResult(
        "scale",
        "7. Scale: write units per run, the tenant's ceiling, deep pages, cost",
        method=__doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),
    )
    runs_per_size = {1: 3, 3: 6, 10: 2} if quick else {1: 40, 3: 160, 10: 20}
    per_size = {steps: _runs(endpoint, steps, runs_per_size[steps]) for steps in STEP_COUNTS}
    transitions = {steps: len(c['entered']) for steps, c in count_states(endpoint).items()}
    # Express bills the execution's duration: measured as the ASL runs under moto, its Lambda
    # tasks answered by the real step runner on DynamoDB Local.
    express_runs = count_states(endpoint, "EXPRESS", repeat=1 if quick else 10)
    express_seconds = {steps: statistics.mean(c["seconds"]) for steps, c in express_runs.items()}

    rows = []
    for steps, m in per_size.items():
        target = 30 + 4 * steps
        result.add(Figure(f"write units per {steps}-step run (runs table and its indexes)", f"{m['wcu']:.1f}",
                          f"≤ 30 + 4N = {target}", m["wcu"] <= target, key=f"wcu_per_run_{steps}",
                          number=m["wcu"], unit="WCU"))
        rows.append([steps, m["runs"], f"{m['wcu']:.1f}", f"{m['table_wcu']:.1f}", f"{m['index_wcu']:.1f}",
                     f"{m['rcu']:.1f}", f"{m['events_wcu']:.1f}", f"{m['events_rcu']:.1f}", transitions[steps]])
    three = per_size[3]
    hottest_key, hottest = three["hottest"]
    ceiling = CEILING_UNITS_PER_SECOND / hottest
    _, sample = three["sample_hottest"]
    result.add(
        Figure("hottest partition key, write units per 3-step run", f"{hottest:.3f} ({hottest_key})", "≤ 1",
               hottest <= 1, key="hottest_key_wcu_per_run", number=round(hottest, 4), unit="WCU/run",
               note=f"busiest single shard in this sample of {three['runs']} runs: {sample:.3f}"),
        Figure("tenant ceiling (1,000 WCU/s ÷ hottest key per run)", f"{ceiling:.0f} runs/s", "≥ 1,000 runs/s",
               ceiling >= 1000, key="tenant_ceiling_runs_per_s", number=round(ceiling), unit="runs/s"),
    )
    result.tables.append("Per run (runs table billed by AWS's rules; events = the projector's event log):\n\n" + md_table(
        ["N", "runs", "WCU", "of which table", "of which indexes", "RCU", "events WCU", "events RCU",
         "states entered"], rows))
    result.tables.append(
        f"Partition keys a tenant's runs share, write units per 3-step run ({three['runs']} runs of one tenant). "
        "A sharded key's steady share is its family's units ÷ its shard count (run ids spread evenly over shards); "
        "the last column is the busiest shard of this finite sample:\n\n" + md_table(
            ["key (shard → k)", "shards", "WCU per run, family", "per shard", "busiest shard in sample"],
            [[f, n, f"{u:.3f}", f"{u / n:.3f}", f"{b:.3f}"] for f, n, u, b in three["families"][:12]]))

    depth = _deep_pages(endpoint, quick)
    result.add(
        Figure("list page read units, page 1 (limit 10)", f"{depth['first']:.1f} RCU", "—", None,
               key="list_page_rcu_depth_1", number=depth["first"], unit="RCU"),
        Figure(f"list page read units, page {depth['depth']} via nextToken (limit 10)", f"{depth['deep']:.1f} RCU",
               "within 10% of page 1", abs(depth["deep"] - depth["first"]) <= 0.1 * depth["first"],
               key="list_page_rcu_depth_1000", number=depth["deep"], unit="RCU"),
    )

    costs = {steps: {"standard": _cost(per_size[steps], transitions[steps], "standard"),
                     "express": _cost(per_size[steps], transitions[steps], "express", express_seconds[steps])}
             for steps in STEP_COUNTS}
    chosen = {steps: _default_class(steps) for steps in STEP_COUNTS}
    # The complete model (every service, the waits, logs, traces, keys) is section 10
    # (bench/cost_model.py), which owns `usd_per_million_runs_N`; these are the run's own
    # requests and units only.
    for steps, by_class in costs.items():
        auto = by_class[chosen[steps]]["total"]
        result.add(Figure(f"USD per million {steps}-step runs, run's own requests only (default class: "
                          f"{chosen[steps]})", f"${auto:.2f}", "—", None,
                          key=f"usd_per_million_runs_{steps}_requests_only", number=round(auto, 2), unit="USD"))
    services = ["step_functions", "dynamodb", "lambda", "api_gateway"]
    result.tables.append("Cost model, USD per million runs, by service and run class (default: the class "
                         "`ORCHESTRATION=auto` picks for the workflow):\n\n" + md_table(
        ["N", "class", "measured execution s", *services, "total"],
        [[steps, run_class + (" (default)" if run_class == chosen[steps] else ""),
          f"{express_seconds[steps]:.3f}" if run_class == "express" else f"{transitions[steps]} states",
          *(f"${cost[s]:.2f}" for s in services), f"${cost['total']:.2f}"]
         for steps, by_class in costs.items() for run_class, cost in by_class.items()]))
    result.notes += [
        ("Cost model: Step Functions = states entered × the Standard price (Standard), or one request + the "
        "execution's measured duration (mean of the Express runs under moto, Lambda tasks included) rounded up to "
        "100 ms × 64 MB × the GB-second price (Express; its logs are at level ERROR, so a run that succeeds writes "
        "none); DynamoDB = (runs-table + events-table "
        "write units) × the write price + read units × the read price; Lambda = invocations (API 1, step runner N, "
        "projector batches) × the request price + measured in-process durations × configured memory "
        "(infra/sizing.py) × the arm64 GB-second price; API Gateway = 1 request (the execute). Durations are this "
        "machine's in-process times against DynamoDB Local; a client that waits on a blocking execute also pays the "
        "API function for the wait."),
        (f"Ceiling: DynamoDB takes at most {CEILING_UNITS_PER_SECOND:,} write units per second per partition; the "
        "hottest key's share per run bounds one tenant's run rate. Counter and list partitions are write-sharded "
        "by the run id (workflow_runs/keys.py), so the hottest key is a shard; with few runs the measured share "
        "is noisier than its mean."),
    ]
    return result


def _runs(endpoint: str, steps: int, count: int, definition: Any = None, **overrides: Any) -> dict[str, Any]:
    """`count` runs of an N-step transform workflow (or of `definition`, with these settings
    `overrides`): their units, invocations and in-process durations."""
    from workflow_runs import keys
    from workflow_runs.models import Status
    from workflow_runs.service import ExecuteRequest, RunService
    from workflow_runs.store import RunStore
    from workflow_runs_dev import dynamodb_local
    from workflow_runs_dev.stream_poller import StreamPoller
    from workflow_runs_step_runner.handler import LazySealer
    from workflow_runs_step_runner.runner import run_step
    from workflow_runs_stream import projector

    from .units import UnitMeter

    settings = fresh_settings(endpoint, **overrides)
    setup = client(endpoint)
    dynamodb_local.create_tables(setup, settings.runs_table, settings.events_table)
    indexes = {settings.runs_table: keys.INDEXES}
    app_client = client(endpoint)
    meter = UnitMeter(app_client, client(endpoint), indexes)
    store = RunStore(settings, client=app_client)
    service = RunService(store, NullOrchestrator(), settings)
    workflow = store.put_workflow(TENANT, str(uuid.uuid4()), definition or transform_workflow(steps))
    meter.reset()
    sealer = LazySealer(settings)
    api_seconds, runner_seconds, invocations, run_ids = [], [], 0, []
    for _ in range(count):
        started = time.perf_counter()
        run = service.start_run(TENANT, ExecuteRequest(workflow_id=workflow.id, inputs={"name": "world"}))
        api_seconds.append(time.perf_counter() - started)
        run_ids.append(run.id)
        while True:
            started = time.perf_counter()
            reply = run_step({"runId": run.id, "attempt": 0}, settings=settings, store=store, sealer=sealer)
            runner_seconds.append(time.perf_counter() - started)
            invocations += 1
            if reply["next"] != "step":
                break
        assert store.run_status(run.id) is Status.COMPLETED, reply
    wcu, rcu = meter.totals(settings.runs_table)
    table_wcu = sum(v for k, v in meter.write_units.items() if k.startswith(settings.runs_table + ":"))
    per_key = Counter({k: v / count for k, v in meter.write_units.items()})
    families = _families(per_key, run_keys={keys.run_pk(r) for r in run_ids})

    projector_client = client(endpoint)
    projector_meter = UnitMeter(projector_client, client(endpoint), indexes)
    projector_store = RunStore(settings, client=projector_client)
    batches: list[float] = []

    def project(batch: Any, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return projector.handler(batch, context, store=projector_store)
        finally:
            batches.append(time.perf_counter() - started)

    with StreamPoller(settings, project) as poller:
        if not poller.wait_idle(timeout=120):
            raise RuntimeError("the stream poller did not catch up")
    events_wcu, events_rcu = projector_meter.totals(settings.events_table)
    projector_table_rcu = projector_meter.totals(settings.runs_table)[1]
    return {
        "runs": count,
        "wcu": wcu / count,
        "table_wcu": table_wcu / count,
        "index_wcu": (wcu - table_wcu) / count,
        "rcu": (rcu + projector_table_rcu) / count,
        "events_wcu": events_wcu / count,
        "events_rcu": events_rcu / count,
        "hottest": max(((f, u / n) for f, n, u, _ in families), key=lambda kv: kv[1]),
        "sample_hottest": max(((k, v) for k, v in per_key.items() if k.split(":", 1)[1] not in
                               {keys.run_pk(r) for r in run_ids}), key=lambda kv: kv[1]),
        "families": families,
        "api_seconds": statistics.mean(api_seconds),
        "runner_seconds": sum(runner_seconds) / count,
        "runner_invocations": invocations / count,
        "projector_seconds": sum(batches) / count,
        "projector_invocations": len(batches) / count,
    }


SHARD_SUFFIX = re.compile(r"^(?P<family>.+)#(?P<shard>\d+)$")


def _families(per_key: Counter, run_keys: set[str]) -> list[tuple[str, int, float, float]]:
    """Keys the tenant's runs share, grouped by write-shard family: (family, shards, units
    per run of the family, the busiest shard's units per run), busiest family first. A run's
    own partition (RUN#<id>) is not shared and grows with nothing but the run itself."""
    from workflow_runs import keys

    grouped: dict[str, list[float]] = {}
    for name, units in per_key.items():
        table, pk = name.split(":", 1)
        if pk in run_keys:
            continue
        match = SHARD_SUFFIX.match(pk)
        family = f"{table}:{match['family']}#k" if match else name
        grouped.setdefault(family, []).append(units)
    rows = []
    for family, shares in grouped.items():
        if family.endswith("#k"):
            shards = keys.ACTIVE_SHARDS if "ACTIVE#" in family else (
                keys.COUNTER_SHARDS if "#C#" in family else keys.LIST_SHARDS)
        else:
            shards = 1
        rows.append((family, shards, sum(shares), max(shares)))
    return sorted(rows, key=lambda r: r[2] / r[1], reverse=True)


def _deep_pages(endpoint: str, quick: bool) -> dict[str, Any]:
    """Page 1 and page `depth` of a tenant's list (limit 10), the latter reached by nextToken."""
    from workflow_runs import keys
    from workflow_runs.models import RunInput
    from workflow_runs.service import ListQuery, RunService
    from workflow_runs.store import NewRun, RunStore
    from workflow_runs_dev import dynamodb_local

    from .units import UnitMeter

    depth = 20 if quick else 1000
    settings = fresh_settings(endpoint)
    setup = client(endpoint)
    dynamodb_local.create_tables(setup, settings.runs_table, settings.events_table)
    store = RunStore(settings, client=setup)
    workflow = store.put_workflow(TENANT, str(uuid.uuid4()), transform_workflow(1))

    def create(_: int) -> None:
        store.create_run(NewRun(run_id=str(uuid.uuid4()), tenant=TENANT, workflow=workflow,
                                inputs=[RunInput(name="name", value="world")]))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(depth * 10 + 10)))
    reader = client(endpoint)
    meter = UnitMeter(reader, client(endpoint), {settings.runs_table: keys.INDEXES})
    service = RunService(RunStore(settings, client=reader), NullOrchestrator(), settings)
    units, token = {}, None
    for page in range(1, depth + 1):
        meter.reset()
        query = ListQuery(limit=10, nextToken=token) if token else ListQuery(limit=10)
        _, number, token = service.list_runs(TENANT, query)
        units[number] = meter.totals(settings.runs_table)[1]
    return {"depth": depth, "first": units[1], "deep": units[depth]}


def _default_class(steps: int) -> str:
    """The class `ORCHESTRATION=auto` gives an N-step transform run (workflow_runs.run_class)."""
    from workflow_runs import run_class
    from workflow_runs.settings import Settings

    settings = Settings.from_env({"RUNS_TABLE": "runs", "EVENTS_TABLE": "events", "ORCHESTRATION": "auto"})
    return run_class.choose(transform_workflow(steps).steps, settings)


def _cost(m: dict[str, Any], states: int, run_class: str, express_seconds: float = 0.0) -> dict[str, float]:
    import math

    from infra.sizing import MEMORY_MB

    p = PRICES
    million = 1e6
    if run_class == "express":
        billed_seconds = math.ceil(express_seconds / EXPRESS_DURATION_GRANULARITY_SECONDS) \
            * EXPRESS_DURATION_GRANULARITY_SECONDS
        step_functions = (p["sfn_express_per_request"]
                          + billed_seconds * EXPRESS_BILLED_MB / 1024 * p["sfn_express_per_gb_second"]) * million
    else:
        step_functions = states * p["sfn_standard_per_transition"] * million
    dynamodb = ((m["wcu"] + m["events_wcu"]) * p["dynamodb_per_write_unit"]
                + (m["rcu"] + m["events_rcu"]) * p["dynamodb_per_read_unit"]) * million
    gb_seconds = (m["api_seconds"] * MEMORY_MB["api"] + m["runner_seconds"] * MEMORY_MB["step_runner"]
                  + m["projector_seconds"] * MEMORY_MB["projector"]) / 1024
    requests = 1 + m["runner_invocations"] + m["projector_invocations"]
    lam = (requests * p["lambda_per_request"] + gb_seconds * p["lambda_per_gb_second_arm64"]) * million
    api_gateway = p["apigw_rest_per_request"] * million
    total = step_functions + dynamodb + lam + api_gateway
    return {"step_functions": step_functions, "dynamodb": dynamodb, "lambda": lam, "api_gateway": api_gateway,
            "total": total}

