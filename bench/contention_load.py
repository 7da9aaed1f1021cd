"""11. Contention as a function of load: conflict retries per run at rising rates, for one
workflow of one tenant, and the ceilings the keys every run shares set.

In AWS a transaction is cancelled with `TransactionConflict` when another one holding any of
its items is in flight, and a single write to an item a transaction holds is refused too; a
transaction lasts 10–25 ms longer than a single write. This machine cannot drive 1,000 runs/s
through the whole stack, so:

1. **Real runs, recorded.** `workflow-runs dev` (`LocalRuntime`: the service, the local
   orchestrator and the real step runner) on DynamoDB Local, with `FaultInjector` holding each
   transaction in flight 10–25 ms more (uniform) and conflicting every overlap on an item, no
   random faults. Runs of a 3-step transform workflow are started at a steady rate; every
   write that succeeded is recorded per run (its items, its start and its latency) and every
   conflict the injector answered is counted.
2. **Replayed at the target rates.** A discrete-event simulation replays the recorded runs'
   writes (their item sets, the gaps between them) as Poisson arrivals at each rate: a run's
   own items stay its own, a sharded shared key (a counter shard) gets a shard drawn per run
   as the run id draws it, any other key is shared by every run. A transaction holds its items
   10–25 ms; one that meets a held item is cancelled and retried with the store's own backoff
   (`Dynamo`'s full-jitter schedule; a run whose retries run out is *exhausted*); a single write
   meeting a held item is refused and retried the same way.
3. **Checked.** The simulation replays the real runs' rates too, with each transaction's hold
   lengthened by the latency the real stack measured for its transactions (in one busy Python
   process a transaction stays in flight longer than the 10–25 ms added): its retries per run
   are set beside the real ones.

`workflow_ceiling_runs_per_s` is the highest rate simulated at which retries per run stay at or
below 0.1 and no run exhausts its retries. The deployment's ceiling comes from the keys every
tenant shares, the Active index's shards (a run enters and leaves it), billed in write units
per run and set against the 1,000 write units a second one partition takes; the stream-lease
key is one tenant's, written twice per stream (open and close), so it bounds a tenant's stream
opens, not the deployment's runs.
"""

from __future__ import annotations

import heapq
import logging
import random
import re
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import Figure, SectionResult, md_table
from .contention import faulty_runtime
from .dynamodb_cost import TENANT, dynamodb_endpoint, transform_workflow

TRANSACTION_SECONDS = (0.010, 0.025)
SINGLE_WRITE_SECONDS = 0.005  # a single write's latency in the simulation (it holds nothing)
CANCEL_SECONDS = 0.003  # how long a cancelled attempt takes to be answered
RETRY_TARGET = 0.1  # retries per run at the ceiling
PARTITION_UNITS_PER_SECOND = 1000
TARGET_WORKFLOW = 1000
TARGET_DEPLOYMENT = 10000
SIMULATED_RATES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
SHARD_SUFFIX = re.compile(r"^(?P<family>.+#)(?P<shard>\d{2})$")  # counter shards: …#07
# Each real pass has a workflow (and tables) of its own: their counters are one workflow's here.
WORKFLOW_COUNTER = re.compile(r"#C#WF#[^#]+#$")


@dataclass(frozen=True)
class Write:
    """One write a run made: when after the run's first write it started, how long it took,
    whether it was a transaction, and its items (table, PK, SK)."""

    start: float
    latency: float
    transaction: bool
    items: tuple[tuple[str, str, str], ...]


@dataclass
class RunTemplate:
    run_id: str
    writes: list[Write] = field(default_factory=list)


class WriteRecorder:
    """Records every write of a client that succeeded, per run (the run whose RUN# item it
    touches: a status transaction carries the run's head beside the shared counter)."""

    def __init__(self, client: Any):
        self._lock = threading.Lock()
        self.runs: dict[str, list[tuple[float, float, bool, tuple]]] = {}
        self.transaction_latencies: list[float] = []
        events = client.meta.events
        events.register("before-parameter-build.dynamodb", self._before, unique_id=f"rec-b-{id(self)}")
        events.register("after-call.dynamodb", self._after, unique_id=f"rec-a-{id(self)}")

    def _before(self, model: Any, params: dict, context: dict, **_: Any) -> None:
        context["recorded_call"] = (_items_of(model.name, params), time.perf_counter())

    def _after(self, model: Any, parsed: dict, context: dict, **_: Any) -> None:
        items, began = context.get("recorded_call") or ((), 0.0)
        name = model.name
        if "Error" in (parsed or {}):
            return
        if not items:
            return
        run_id = next((pk[4:] for _, pk, _ in items if pk.startswith("RUN#")), None)
        if run_id is None:
            return
        latency = time.perf_counter() - began
        with self._lock:
            self.runs.setdefault(run_id, []).append((began, latency, name == "TransactWriteItems", items))
            if name == "TransactWriteItems":
                self.transaction_latencies.append(latency)

    def templates(self, run_ids: Iterable[str]) -> list[RunTemplate]:
        out = []
        with self._lock:
            for run_id in run_ids:
                writes = sorted(self.runs.get(run_id, []))
                if not writes:
                    continue
                first = writes[0][0]
                out.append(RunTemplate(run_id, [Write(b - first, lat, tx, items) for b, lat, tx, items in writes]))
        return out


def _items_of(operation: str, params: dict) -> tuple[tuple[str, str, str], ...]:
    if operation == "TransactWriteItems":
        found = []
        for entry in params.get("TransactItems", []):
            ((_, body),) = entry.items()
            key = body.get("Key") or body["Item"]
            found.append((body["TableName"], key["PK"]["S"], key["SK"]["S"]))
        return tuple(found)
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        key = params.get("Key") or params["Item"]
        return ((params["TableName"], key["PK"]["S"], key["SK"]["S"]),)
    return ()


# ------------------------------------------------------------------ the simulation


@dataclass
class SimResult:
    rate: float
    runs: int
    retries: int
    exhausted: int
    reached: float  # runs/s that completed

    @property
    def retries_per_run(self) -> float:
        return self.retries / self.runs


def _abstract(template: RunTemplate, shards: dict[str, int]) -> list[tuple[Write, list[tuple[str, Any]]]]:
    """Each write's items as the simulation sees them: ("own", sk) for the run's own items,
    ("family", family) for a sharded shared key, ("shared", key) otherwise."""
    out = []
    for write in template.writes:
        kinds: list[tuple[str, Any]] = []
        for table, pk, sk in write.items:
            if pk.startswith("RUN#") or "#IDEM#" in pk:
                kinds.append(("own", (table, pk.split("#", 2)[0], sk)))
            elif (family := _shared_family((table, pk, sk))) in shards:
                kinds.append(("family", ("runs", family, sk)))
            else:
                kinds.append(("shared", (table, pk, sk)))
        out.append((write, kinds))
    return out


def counters_out_of_transactions(templates: list[RunTemplate]) -> list[RunTemplate]:
    """The same runs if their status transactions held only the run's own items and every
    shared item were written by a single write of its own (counters applied another way):
    a design not built, simulated to size it."""
    out = []
    for template in templates:
        writes = []
        for write in template.writes:
            own = tuple(i for i in write.items if _shared_family(i) is None)
            shared = tuple(i for i in write.items if _shared_family(i) is not None)
            if not write.transaction or not shared:
                writes.append(write)
                continue
            writes.append(Write(write.start, write.latency, bool(own), own or shared[:1]))
            writes += [Write(write.start, 0.0, False, (item,)) for item in shared]
        out.append(RunTemplate(template.run_id, writes))
    return out


def simulate(templates: list[RunTemplate], rate: float, runs: int, *, seed: int = 7,
             shards: dict[str, int] | None = None, extra_hold: float = 0.0,
             transaction_seconds: tuple[float, float] = TRANSACTION_SECONDS) -> SimResult:
    """Replay `runs` runs arriving as a Poisson process at `rate` runs/s (see the module doc)."""
    from workflow_runs.store.dynamo import Backoff

    rng = random.Random(seed)
    backoff = Backoff()
    shards = shards or {}
    plans = [_abstract(t, shards) for t in templates]
    held_until: dict[Any, float] = {}
    queue: list[tuple[float, int, int, int, Any]] = []  # (time, seq, run, write index, delays)
    seq = 0
    arrival = 0.0
    run_items: list[tuple[list, dict]] = []
    for run in range(runs):
        arrival += rng.expovariate(rate)
        plan = plans[rng.randrange(len(plans))]
        draw = {family: rng.randrange(count) for family, count in shards.items()}
        run_items.append((plan, draw))
        heapq.heappush(queue, (arrival, seq, run, 0, None))
        seq += 1
    first_arrival = queue[0][0] if queue else 0.0
    retries = exhausted = completed = 0
    last_end = 0.0

    def concrete(run: int, kinds: list[tuple[str, Any]], draw: dict) -> list[Any]:
        keys_ = []
        for kind, value in kinds:
            if kind == "own":
                keys_.append(("own", run, value))
            elif kind == "family":
                table, family, sk = value
                keys_.append((table, f"{family}{draw[family]:02d}", sk))
            else:
                keys_.append(value)
        return keys_

    while queue:
        now, _, run, index, delays = heapq.heappop(queue)
        plan, draw = run_items[run]
        write, kinds = plan[index]
        items = concrete(run, kinds, draw)
        if any(held_until.get(item, 0.0) > now for item in items):
            retries += 1
            delays = delays if delays is not None else backoff.delays(rng.random)
            delay = next(delays, None)
            if delay is None:
                exhausted += 1
                continue
            heapq.heappush(queue, (now + CANCEL_SECONDS + delay, seq, run, index, delays))
            seq += 1
            continue
        if write.transaction:
            low, high = transaction_seconds
            duration = rng.uniform(low, high) + extra_hold
            for item in items:
                held_until[item] = now + duration
        else:
            duration = SINGLE_WRITE_SECONDS
        end = now + duration
        if index + 1 < len(plan):
            following = plan[index + 1][0]
            gap = max(0.0, following.start - write.start - write.latency)
            heapq.heappush(queue, (end + gap, seq, run, index + 1, None))
            seq += 1
        else:
            completed += 1
            last_end = max(last_end, end)
    span = max(last_end - first_arrival, 1e-9)
    return SimResult(rate=rate, runs=runs, retries=retries, exhausted=exhausted, reached=completed / span)


# ------------------------------------------------------------------ the real stack


@dataclass
class RealResult:
    rate: float
    runs: int
    conflicts: int
    reached: float
    completed: int
    templates: list[RunTemplate]
    transaction_latency: float


def drive_real(endpoint: str, rate: float, count: int) -> RealResult:
    from workflow_runs.service import ExecuteRequest
    from workflow_runs_dev.faults import FaultInjector

    faults = FaultInjector(overlap=True, transaction_seconds=TRANSACTION_SECONDS, seed=7)
    with faulty_runtime(endpoint, faults) as (service, store, workflow):
        recorder = WriteRecorder(store.client)
        before = Counter(faults.stats)
        run_ids: list[str] = []
        started = time.perf_counter()
        for i in range(count):
            due = started + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            run_ids.append(service.start_run(TENANT, ExecuteRequest(workflow_id=workflow.id, inputs={"name": "x"})).id)
        deadline = time.monotonic() + 120
        while True:
            with faults.suspended():
                statuses = [store.run_status(r) for r in run_ids]
            if all(s is not None and s.terminal for s in statuses) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        stats = Counter(faults.stats) - before
    completed = sum(1 for s in statuses if s is not None and s.value == "completed")
    latencies = recorder.transaction_latencies
    return RealResult(rate=rate, runs=count, conflicts=stats["conflict_overlap"] + stats["conflict_single_write"],
                      reached=completed / elapsed, completed=completed, templates=recorder.templates(run_ids),
                      transaction_latency=statistics.median(latencies) if latencies else 0.0)


# ------------------------------------------------------------------ the section


def run(quick: bool) -> SectionResult:
    logging.disable(logging.WARNING)
    with dynamodb_endpoint() as endpoint:
        return _measure(endpoint, quick)


def _measure(endpoint: str, quick: bool) -> SectionResult:
    from workflow_runs import keys

    result = SectionResult("contention-load", "11. Contention as a function of load (one workflow, one tenant)",
                           method=__doc__.split("\n\n", 1)[1].replace("\n", " ").strip())
    real_rates = (2, 5) if quick else (2, 5, 10)
    count = 6 if quick else 40
    reals = [drive_real(endpoint, rate, count) for rate in real_rates]
    templates = [t for r in reals for t in r.templates if t.writes]
    # The sharded shared keys (a counter shard ends in its two-digit shard number).
    shards = {family: keys.COUNTER_SHARDS for family in _families(templates) if family.endswith("#")}

    # The check: the simulation at the real stack's rates, its holds lengthened by the real latency.
    check_rows = []
    for real in reals:
        extra = max(0.0, real.transaction_latency - statistics.mean(TRANSACTION_SECONDS))
        # At the rate the real stack reached: runs started faster than it completes them queue.
        sim = simulate(templates, min(real.rate, real.reached), max(real.runs, 200), shards=shards,
                       extra_hold=extra)
        check_rows.append([f"{real.rate:g}", f"{real.reached:.1f}", f"{real.completed}/{real.runs}",
                           f"{real.conflicts / real.runs:.3f}", f"{real.transaction_latency * 1000:.1f} ms",
                           f"{sim.retries_per_run:.3f}"])
    result.tables.append(
        "The simulation checked against the real stack (rates this machine reaches; simulated at the rate the "
        "real stack completed runs, the holds lengthened to its transactions' median latency):\n\n" + md_table(
            ["rate runs/s", "reached runs/s", "completed", "real conflicts per run", "real transaction latency",
             "simulated retries per run"], check_rows))

    runs_per_rate = 200 if quick else 3000
    curve = [simulate(templates, rate, runs_per_rate, shards=shards) for rate in SIMULATED_RATES]
    unbuilt = counters_out_of_transactions(templates)
    what_if = [simulate(unbuilt, rate, runs_per_rate, shards=shards) for rate in SIMULATED_RATES]
    ceiling = 0.0
    for point in curve:
        if point.retries_per_run <= RETRY_TARGET and point.exhausted == 0:
            ceiling = point.rate
        else:
            break
    for point in curve:
        result.add(Figure(f"conflict retries per run at {point.rate:g} runs/s (simulated)",
                          f"{point.retries_per_run:.3f}", "—", None,
                          key=f"contention_retries_per_run_at_{point.rate:g}", number=round(point.retries_per_run, 4),
                          unit="retries/run",
                          note=f"{point.exhausted} of {point.runs} runs exhausted their retries" if point.exhausted
                          else ""))
    result.add(Figure("workflow ceiling (retries per run ≤ 0.1, none exhausted)", f"{ceiling:g} runs/s",
                      f"≥ {TARGET_WORKFLOW:,} runs/s", ceiling >= TARGET_WORKFLOW, key="workflow_ceiling_runs_per_s",
                      number=ceiling, unit="runs/s"))
    result.tables.append(
        "The curve (simulated; one workflow of one tenant). The last column replays the same runs with their "
        "status transactions holding only the run's own items and the counter shard written apart, a design "
        "not built:\n\n" + md_table(
            ["rate runs/s", "retries per run", "runs exhausted", "runs/s completed",
             "retries per run, counters out of the transaction"],
            [[f"{p.rate:g}", f"{p.retries_per_run:.3f}", f"{p.exhausted} of {p.runs}", f"{p.reached:.0f}",
              f"{w.retries_per_run:.3f}"] for p, w in zip(curve, what_if, strict=True)]))
    shared = Counter(_shared_family(i) for t in templates for w in t.writes if w.transaction for i in w.items)
    shared.pop(None, None)
    result.tables.append("Shared items in the recorded runs' transactions (per run):\n\n" + md_table(
        ["key family", "shards", "transactions per run"],
        [[family, shards.get(family, 1), f"{n / len(templates):.2f}"] for family, n in shared.items()]))

    active_units = _active_units_per_run(endpoint)
    per_shard = active_units / keys.ACTIVE_SHARDS
    deployment = PARTITION_UNITS_PER_SECOND / per_shard
    result.add(
        Figure("Active index write units per run (enters at creation, leaves at the end)", f"{active_units:.1f} WCU",
               "—", None, key="active_index_wcu_per_run", number=active_units, unit="WCU"),
        Figure(f"deployment ceiling (1,000 WCU/s ÷ Active units per run per shard, {keys.ACTIVE_SHARDS} shards)",
               f"{deployment:,.0f} runs/s", f"≥ {TARGET_DEPLOYMENT:,} runs/s", deployment >= TARGET_DEPLOYMENT,
               key="deployment_ceiling_runs_per_s", number=round(deployment), unit="runs/s"),
    )
    result.notes += [
        ("Why the curve bends where it does: every status transaction of a run also moves one shard of its "
         f"workflow's counters ({keys.COUNTER_SHARDS} shards), so each shard takes a share of every run's "
         "transactions, and with a 10–25 ms hold the chance that two meet grows with the rate. Past the ceiling "
         "the remedy is to take the counters out of the status transaction (applied from the table's stream, "
         "idempotently per run) or to spread them over many more shards (a count then reads them all)."),
        ("The stream-lease key (`TEN#<t>#STREAMS`, one item per slot) is one tenant's: two single writes per "
         "stream (open, close) bound one tenant's stream opens, not the deployment's runs; Active is the only "
         "key every tenant's runs share."),
    ]
    return result


def _families(templates: list[RunTemplate]) -> set[str]:
    return {f for t in templates for w in t.writes for i in w.items if (f := _shared_family(i))}


def _shared_family(item: tuple[str, str, str]) -> str | None:
    _, pk, _ = item
    if pk.startswith("RUN#") or "#IDEM#" in pk:
        return None
    match = SHARD_SUFFIX.match(pk)
    return WORKFLOW_COUNTER.sub("#C#WF#<workflow>#", match["family"]) if match else pk


def _active_units_per_run(endpoint: str) -> float:
    """Write units a run costs the Active index, billed by AWS's rules (bench.units)."""
    from workflow_runs import keys
    from workflow_runs.service import ExecuteRequest, RunService
    from workflow_runs.store import RunStore
    from workflow_runs_dev import dynamodb_local
    from workflow_runs_step_runner.handler import LazySealer
    from workflow_runs_step_runner.runner import run_step

    from .dynamodb_cost import NullOrchestrator, client, fresh_settings
    from .units import UnitMeter

    settings = fresh_settings(endpoint)
    dynamodb_local.create_tables(client(endpoint), settings.runs_table, settings.events_table)
    app = client(endpoint)
    meter = UnitMeter(app, client(endpoint), {settings.runs_table: keys.INDEXES})
    store = RunStore(settings, client=app)
    service = RunService(store, NullOrchestrator(), settings)
    workflow = store.put_workflow(TENANT, str(uuid.uuid4()), transform_workflow(3))
    meter.reset()
    runs = 5
    sealer = LazySealer(settings)
    for _ in range(runs):
        run = service.start_run(TENANT, ExecuteRequest(workflow_id=workflow.id, inputs={"name": "x"}))
        while run_step({"runId": run.id, "attempt": 0}, settings=settings, store=store, sealer=sealer)["next"] == "step":
            pass
    return sum(v for k, v in meter.write_units.items() if f"/{keys.ACTIVE.name}:" in k) / runs
