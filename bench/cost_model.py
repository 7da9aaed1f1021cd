"""10. What a run costs: the complete model, priced from measured counts and bytes.

Two workflows: the 3-step transform, and an AI workflow (transform → llm → transform) whose
model call is simulated: a Bedrock ConverseStream stand-in (`SimulatedModel`) that streams a
reasoning text in `THINKING_CHUNKS` deltas over `MODEL_SECONDS`, through the real `llm` step.
Model tokens are not priced (they are the model's bill, not this service's).

Each run goes through the real code on DynamoDB Local: the service's blocking `execute`
(start, then its wait on the event log) or, streamed, the start and the SSE follower
(`workflow_runs_stream.follow`) from start to the closing event; the step runner's and the
projector's instrumented Lambda handlers (Powertools logs and EMF metrics at the shipped log
level) for each step and each stream record. Per function: invocations, wall and CPU time
(thread CPU), log bytes written (stdout, routed by thread) and read units (the shared
client's reads, attributed by thread). Write units, events and read units of the run itself
are section 7's meter (`bench.units.UnitMeter`, AWS's billing rules), run on the same
workflows; storage from the items a run leaves; KMS calls counted from the real sealer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import resource
import statistics
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import Figure, SectionResult, md_table
from .dynamodb_cost import TENANT, client, dynamodb_endpoint, fresh_settings, transform_workflow
from .first_request import Context  # what Lambda passes a handler
from .prices import (
    AS_OF,
    EXPRESS_BILLED_MB,
    EXPRESS_DURATION_GRANULARITY_SECONDS,
    LAMBDA_FULL_VCPU_MB,
    PRICES,
    REGION,
    RUNS_PER_MONTH,
    SECONDS_PER_MONTH,
    default_sampled_fraction,
)

MODEL_SECONDS = 8.0
THINKING_CHUNKS = 24
MEMORY_CHOICES = (256, 512, 1024)
FUNCTIONS = ("api", "step_runner", "projector", "stream")
# h6's SSE section measures the follower's reads per stream-second; until its figure exists
# in this process, the follower's reads are measured here (`_follower_reads_per_second`).
SSE_READS_FIGURE = "sse_reads_per_stream_second"


# ------------------------------------------------------------------ the simulated model


class SimulatedModel:
    """A bedrock-runtime client: `converse_stream` answers a stream that sends the reasoning
    in `chunks` deltas spread over `seconds` (the wait is I/O: the process sleeps), then the
    answer and the stop."""

    def __init__(self, seconds: float, chunks: int = THINKING_CHUNKS):
        self.seconds = seconds
        self.chunks = chunks

    def converse_stream(self, **request: Any) -> dict[str, Any]:
        return {"stream": _SimulatedStream(self.seconds, self.chunks)}


class _SimulatedStream:
    def __init__(self, seconds: float, chunks: int):
        self._seconds, self._chunks = seconds, chunks
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield {"messageStart": {"role": "assistant"}}
        for i in range(self._chunks):
            if self._closed.wait(self._seconds / self._chunks):
                return
            text = f"Step {i + 1}: weighing what the prompt asks and what the answer needs to say next. "
            yield {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": text}}}}
        yield {"contentBlockStop": {"contentBlockIndex": 0}}
        yield {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "A short, simulated answer."}}}
        yield {"messageStop": {"stopReason": "end_turn"}}
        yield {"metadata": {"usage": {"inputTokens": 40, "outputTokens": 600, "totalTokens": 640}}}


def ai_workflow():
    from workflow_runs.models import WorkflowDefinition

    return WorkflowDefinition.model_validate({
        "name": "AI: prompt, think, shape",
        "inputs": [{"name": "name", "type": "string", "default": "tides"}],
        "steps": [
            {"id": "prompt", "type": "transform", "config": {"output": {"text": "Explain {{ inputs.name }} briefly."}}},
            {"id": "think", "type": "llm", "config": {"prompt": "{{ steps.prompt.outputs.text }}"}},
            {"id": "shape", "type": "transform", "config": {"output": {"answer": "{{ steps.think.outputs.text }}"}}},
        ]})


# ------------------------------------------------------------------ attribution by thread


class ByThread:
    """Which function the current thread works for; unlabelled threads (anyio's workers
    under the SSE follower) count as `default`."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.default = "stream"

    @contextlib.contextmanager
    def working_for(self, name: str) -> Iterator[None]:
        previous = getattr(self._local, "name", None)
        self._local.name = name
        try:
            yield
        finally:
            self._local.name = previous

    @property
    def current(self) -> str:
        return getattr(self._local, "name", None) or self.default


class LogBytes:
    """A stdout stand-in: counts the UTF-8 bytes each function writes (Powertools JSON log
    records and EMF documents), one line per record as CloudWatch Logs ingests it."""

    def __init__(self, threads: ByThread):
        self._threads = threads
        self._lock = threading.Lock()
        self.bytes: Counter[str] = Counter()

    def write(self, text: str) -> int:
        with self._lock:
            self.bytes[self._threads.current] += len(text.encode())
        return len(text)

    def flush(self) -> None:
        pass


class ReadUnits:
    """Read units of every read on a client, billed as AWS bills them (bench.units), per function."""

    def __init__(self, dynamodb: Any, threads: ByThread):
        self._threads = threads
        self._lock = threading.Lock()
        self.units: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        events = dynamodb.meta.events
        events.register("before-parameter-build.dynamodb", self._before, unique_id=f"cost-r-b-{id(self)}")
        events.register("after-call.dynamodb", self._after, unique_id=f"cost-r-a-{id(self)}")

    @staticmethod
    def _before(params: dict, context: dict, **_: Any) -> None:
        context["cost_params"] = params

    def _after(self, model: Any, parsed: dict, context: dict, **_: Any) -> None:
        from .units import _bill_reads

        reads: Counter[str] = Counter()
        _bill_reads(reads, model.name, context.get("cost_params") or {}, parsed or {})
        with self._lock:
            self.units[self._threads.current] += sum(reads.values())
            self.requests[self._threads.current] += 1


@dataclass
class Calls:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)


@contextlib.contextmanager
def timed(calls: Calls) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        calls.add(time.perf_counter() - wall, time.thread_time() - cpu)


# ------------------------------------------------------------------ the timed runs


class Harness:
    """One process standing in for the four functions, each call attributed to its function."""

    def __init__(self, settings: Any, model: SimulatedModel):
        from workflow_runs import telemetry
        from workflow_runs.service import RunService
        from workflow_runs.store import RunStore, dynamodb_client
        from workflow_runs_dev.stream_poller import StreamPoller

        self.settings = settings
        self.model = model
        self.threads = ByThread()
        self.logs = LogBytes(self.threads)
        for service in telemetry.SERVICES:
            telemetry.get_logger(service).registered_handler.stream = self.logs
        telemetry.route_our_loggers(telemetry.get_logger(telemetry.STEP_RUNNER))
        self.reads = ReadUnits(dynamodb_client(settings.dynamodb_endpoint_url), self.threads)
        from workflow_runs.secrets import get_sealer

        self.kms = CountingKms()  # the real sealer's KMS calls, answered and counted
        get_sealer(settings)._client = self.kms
        self.calls: dict[str, Calls] = defaultdict(Calls)
        self.records: list[dict] = []
        self.store = RunStore(settings)
        self.service = RunService(self.store, self, settings)
        self.poller = StreamPoller(settings, self._project)
        self._runner: threading.Thread | None = None
        self.run_seconds: list[float] = []

    # The orchestrator port: a started run's steps run on a thread, as Lambda invocations.
    def start(self, run_id: str, orchestration: str = "standard") -> None:
        self._runner = threading.Thread(target=self._drive, args=(run_id,), daemon=True)
        self._runner.start()

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = "standard") -> bool:
        return False

    def describe(self, run_id: str) -> str | None:
        return None

    def _drive(self, run_id: str) -> None:
        from workflow_runs_step_runner import handler as step_runner

        started = time.perf_counter()
        with self.threads.working_for("step_runner"):
            while True:
                with timed(self.calls["step_runner"]):
                    reply = step_runner.handler({"runId": run_id, "attempt": 0}, Context())
                if reply["next"] != "step":
                    break
        self.run_seconds.append(time.perf_counter() - started)

    def _project(self, batch: dict, context: Any) -> dict:
        """At low traffic the event source mapping invokes the projector for each record."""
        from workflow_runs_stream import projector

        failures = []
        with self.threads.working_for("projector"):
            for record in batch["Records"]:
                self.records.append(record)
                with timed(self.calls["projector"]):
                    failures += projector.handler({"Records": [record]}, Context())["batchItemFailures"]
        return {"batchItemFailures": failures}

    def blocking(self, workflow_id: str) -> Any:
        from workflow_runs.service import ExecuteRequest

        with self.threads.working_for("api"), timed(self.calls["api"]):
            run, ended = self.service.execute(TENANT, ExecuteRequest(workflow_id=workflow_id, inputs={}),
                                              deadline=time.monotonic() + 60)
        self._join()
        if not ended:
            raise RuntimeError(f"the blocking execute did not see run {run.id} end")
        return run

    def streamed(self, workflow_id: str) -> Any:
        from workflow_runs.service import ExecuteRequest
        from workflow_runs_stream.follow import FollowPolicy, follow

        policy = FollowPolicy.from_settings(self.settings)
        closing: list[str] = []

        async def watch(run_id: str) -> None:
            async for event in follow(self.store, run_id, None, policy):
                if event.name in ("result", "error"):
                    closing.append(event.name)

        with self.threads.working_for("stream"), timed(self.calls["stream"]):
            run = self.service.start_run(TENANT, ExecuteRequest(workflow_id=workflow_id, inputs={}))
            asyncio.run(watch(run.id))
        self._join()
        if closing != ["result"]:
            raise RuntimeError(f"the stream of run {run.id} ended with {closing}")
        return run

    def _join(self) -> None:
        if self._runner is not None:
            self._runner.join(timeout=120)
        if not self.poller.wait_idle(timeout=60):
            raise RuntimeError("the stream poller did not catch up")

    def batched_projection(self, batch_size: int) -> Calls:
        """The same records again, in full batches, as at high traffic (the event log writes
        are idempotent: the same events are written again)."""
        from workflow_runs_stream import projector

        calls = Calls()
        with self.threads.working_for("projector-batched"):
            for i in range(0, len(self.records), batch_size):
                with timed(calls):
                    projector.handler({"Records": self.records[i:i + batch_size]}, Context())
        return calls


@dataclass
class Measured:
    """Per run of one workflow in one mode: what each function did."""

    runs: int
    invocations: dict[str, float]
    wall: dict[str, float]  # seconds per run, summed over invocations
    cpu: dict[str, float]
    log_bytes: dict[str, float]
    read_units: dict[str, float]
    records: float  # stream records per run (the projector's invocations at low traffic)
    run_seconds: float  # start of the first step to the end of the last
    kms_calls: float


def _timed_runs(harness: Harness, workflow_id: str, mode: str, count: int) -> Measured:
    harness.calls.clear()
    harness.logs.bytes.clear()
    harness.reads.units.clear()
    harness.run_seconds.clear()
    records_before = len(harness.records)
    kms_before = sum(harness.kms.calls.values())
    for _ in range(count):
        (harness.blocking if mode == "blocking" else harness.streamed)(workflow_id)
    per = {name: harness.calls.get(name, Calls()) for name in FUNCTIONS}
    return Measured(
        runs=count,
        invocations={n: len(c.wall) / count for n, c in per.items()},
        wall={n: sum(c.wall) / count for n, c in per.items()},
        cpu={n: sum(c.cpu) / count for n, c in per.items()},
        log_bytes={n: harness.logs.bytes.get(n, 0) / count for n in FUNCTIONS},
        read_units={n: harness.reads.units.get(n, 0) / count for n in FUNCTIONS},
        records=(len(harness.records) - records_before) / count,
        run_seconds=statistics.mean(harness.run_seconds),
        kms_calls=(sum(harness.kms.calls.values()) - kms_before) / count,
    )


# ------------------------------------------------------------------ the model


def lambda_seconds(wall: float, cpu: float, memory_mb: int) -> float:
    """Duration at `memory_mb`: the CPU-bound part scales with Lambda's CPU share (this
    machine's core taken as one vCPU), the waits stay as measured."""
    return cpu * max(1.0, LAMBDA_FULL_VCPU_MB / memory_mb) + max(0.0, wall - cpu)


@dataclass
class FunctionUse:
    invocations: float
    wall: float
    cpu: float
    log_bytes: float


def price(uses: dict[str, FunctionUse], memory: dict[str, int], *, units: dict[str, float], storage_gb_month: float,
          states: int, run_class: str, run_seconds: float, api_requests: int, traces: float,  # traces: recorded
          kms_calls: float) -> dict[str, float]:
    """USD per million runs, by service."""
    p, million = PRICES, 1e6
    if run_class == "express":
        billed = math.ceil(run_seconds / EXPRESS_DURATION_GRANULARITY_SECONDS) * EXPRESS_DURATION_GRANULARITY_SECONDS
        sfn = p["sfn_express_per_request"] + billed * EXPRESS_BILLED_MB / 1024 * p["sfn_express_per_gb_second"]
    else:
        sfn = states * p["sfn_standard_per_transition"]
    dynamodb = (units["wcu"] * p["dynamodb_per_write_unit"] + units["rcu"] * p["dynamodb_per_read_unit"]
                + storage_gb_month * p["dynamodb_storage_per_gb_month"])
    lam = sum(u.invocations * p["lambda_per_request"]
              + lambda_seconds(u.wall, u.cpu, memory[name]) * memory[name] / 1024 * p["lambda_per_gb_second_arm64"]
              for name, u in uses.items())
    logs = sum(u.log_bytes for u in uses.values()) / 1024**3 * p["logs_ingestion_per_gb"]
    costs = {"step_functions": sfn, "dynamodb": dynamodb, "lambda": lam, "cloudwatch_logs": logs,
             "x_ray": traces * p["xray_per_trace_recorded"],
             "kms": kms_calls * p["kms_per_request"], "api_gateway": api_requests * p["apigw_rest_per_request"]}
    costs = {k: v * million for k, v in costs.items()}
    costs["total"] = sum(costs.values())
    return costs


SERVICES = ("step_functions", "dynamodb", "lambda", "cloudwatch_logs", "x_ray", "kms", "api_gateway")


# ------------------------------------------------------------------ counts besides the timed runs


class CountingKms:
    """Answers the KMS calls the real `KmsSealer` makes (a data key it can open again) and
    counts them."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def generate_data_key(self, **request: Any) -> dict[str, Any]:
        self.calls["GenerateDataKey"] += 1
        key = os.urandom(32)
        return {"Plaintext": key, "CiphertextBlob": b"k" + key}

    def decrypt(self, **request: Any) -> dict[str, Any]:
        self.calls["Decrypt"] += 1
        return {"Plaintext": request["CiphertextBlob"][1:]}


def kms_calls_per_run(steps: int) -> float:
    """KMS calls of a run with `envs`: the API seals them once; each step invocation opens
    them, each on a fresh execution environment (its cache empty: the worst case)."""
    from workflow_runs.secrets import KmsSealer

    kms = CountingKms()
    run_id = str(uuid.uuid4())
    blob = KmsSealer("key", client=kms).seal({"MODEL_API_KEY": "secret"}, run_id)
    for _ in range(steps):
        KmsSealer("key", client=kms).unseal(blob, run_id)
    return float(sum(kms.calls.values()))


def storage_bytes_per_run(endpoint: str, definition: Any, overrides: dict[str, Any]) -> float:
    """Bytes a finished run keeps: its items, their index entries and its events, each with
    DynamoDB's 100 bytes of per-item overhead."""
    from workflow_runs import keys
    from workflow_runs.marshal import item_size
    from workflow_runs.service import ExecuteRequest, RunService
    from workflow_runs.store import RunStore
    from workflow_runs_dev import dynamodb_local
    from workflow_runs_step_runner.handler import LazySealer
    from workflow_runs_step_runner.runner import run_step

    from .dynamodb_cost import NullOrchestrator
    from .units import INDEX_OVERHEAD_BYTES, _index_item_size, _index_key

    settings = fresh_settings(endpoint, **overrides)
    dynamo = client(endpoint)
    dynamodb_local.create_tables(dynamo, settings.runs_table, settings.events_table)
    store = RunStore(settings, client=dynamo)
    workflow = store.put_workflow(TENANT, str(uuid.uuid4()), definition)
    run = RunService(store, NullOrchestrator(), settings).start_run(TENANT, ExecuteRequest(workflow_id=workflow.id))
    while run_step({"runId": run.id, "attempt": 0}, settings=settings, store=store,
                   sealer=LazySealer(settings))["next"] == "step":
        pass
    total = 0
    for table in (settings.runs_table, settings.events_table):
        items = dynamo.query(TableName=table, KeyConditionExpression="#pk = :pk",
                             ExpressionAttributeNames={"#pk": keys.PK},
                             ExpressionAttributeValues={":pk": {"S": keys.run_pk(run.id)}})["Items"]
        for item in items:
            total += item_size(item) + INDEX_OVERHEAD_BYTES
            if table == settings.runs_table:
                total += sum(_index_item_size(item, index) for index in keys.INDEXES if _index_key(item, index))
    return float(total)


def retention_months() -> tuple[float, str]:
    from workflow_runs.settings import Settings

    days = getattr(Settings(runs_table="r", events_table="e"), "run_retention_days", None)
    if days:
        return days / 30.4375, f"RUN_RETENTION_DAYS = {days}"
    return 90 / 30.4375, "90 days (the issue's retention default; runs do not expire yet, so storage grows each month)"


# ------------------------------------------------------------------ the section


def run(quick: bool) -> SectionResult:
    with dynamodb_endpoint() as endpoint:
        return _measure(endpoint, quick)


def _environment(endpoint: str) -> Any:
    """The functions' factories read their settings from the environment, as in Lambda."""
    from workflow_runs.settings import get_settings
    from workflow_runs.store import dynamodb_client
    from workflow_runs_dev import dynamodb_local
    from workflow_runs_step_runner import handler as step_runner
    from workflow_runs_stream import projector

    from infra.config import StageConfig

    settings = fresh_settings(endpoint)
    os.environ.update({
        "RUNS_TABLE": settings.runs_table, "EVENTS_TABLE": settings.events_table,
        "DYNAMODB_ENDPOINT_URL": endpoint, "LOCAL_SECRET_KEY": settings.local_secret_key or "",
        "LLM_PROVIDER": "bedrock", "POWERTOOLS_TRACE_DISABLED": "true", "ENVS_KMS_KEY_ID": "bench-envs-key",
        "POWERTOOLS_LOG_LEVEL": StageConfig.__dataclass_fields__["powertools_log_level"].default,
    })
    for cached in (get_settings, dynamodb_client, step_runner.collaborators, projector._default_store):
        cached.cache_clear()
    settings = get_settings()
    dynamodb_local.create_tables(client(endpoint), settings.runs_table, settings.events_table)
    return settings


def _measure(endpoint: str, quick: bool) -> SectionResult:
    from workflow_runs import run_class
    from workflow_runs_step_runner.steps import llm

    from infra.constructs.stream import PROJECTOR_BATCH_SIZE
    from infra.sizing import MEMORY_MB, XRAY_SAMPLED_PERCENT

    from .scale import _runs
    from .state_transitions import count_states

    logging.disable(logging.NOTSET)
    # The model streams at its full pace in quick mode too: the thinking items written (one a
    # second at most) depend on it. (Quick mode runs fewer of each run instead.)
    model_seconds = MODEL_SECONDS
    model = SimulatedModel(model_seconds)
    llm._default_bedrock_client = lambda read_timeout: model  # the step's seam for its client

    settings = _environment(endpoint)
    harness = Harness(settings, model)
    previous_stdout = sys.stdout
    sys.stdout = harness.logs  # type: ignore[assignment]  # EMF documents are printed
    try:
        with harness.poller:
            transform_id = harness.store.put_workflow(TENANT, str(uuid.uuid4()), transform_workflow(3)).id
            ai_id = harness.store.put_workflow(TENANT, str(uuid.uuid4()), ai_workflow()).id
            repeats = 2 if quick else 5
            ai_repeats = 1 if quick else 2
            harness.blocking(transform_id)  # warm: imports, connections
            timed_runs = {
                "3-step transform, blocking": _timed_runs(harness, transform_id, "blocking", repeats),
                "AI, blocking": _timed_runs(harness, ai_id, "blocking", ai_repeats),
                "AI, streamed": _timed_runs(harness, ai_id, "streamed", ai_repeats),
            }
            batched = harness.batched_projection(PROJECTOR_BATCH_SIZE)
            batched_per_record = sum(batched.wall) / len(harness.records), sum(batched.cpu) / len(harness.records)
            batched_logs_per_record = harness.logs.bytes.get("projector-batched", 0) / len(harness.records)
    finally:
        sys.stdout = previous_stdout
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # The run's own units (section 7's meter). The model streams at its pace: the step runner
    # writes its reasoning at most once a second (workflow_runs_step_runner.thinking), so the
    # thinking items written depend on how long it streams.
    count = 3 if quick else 20
    units = {"transform": _runs(endpoint, 3, count), "ai": _runs(endpoint, 3, ai_repeats, ai_workflow(),
                                                                   llm_provider="bedrock")}
    storage = {"transform": storage_bytes_per_run(endpoint, transform_workflow(3), {}),
               "ai": storage_bytes_per_run(endpoint, ai_workflow(), {"llm_provider": "bedrock"})}
    months, retention_note = retention_months()
    states = len(count_states(endpoint)[3]["entered"])
    kms = kms_calls_per_run(3)
    classes = {"transform": run_class.choose(transform_workflow(3).steps, settings),
               "ai": run_class.choose(ai_workflow().steps, settings)}

    def scale_wait(m: Measured) -> Measured:
        """Quick mode measured a shortened model wait: add back the rest as I/O wait."""
        extra = MODEL_SECONDS - model_seconds
        if not extra or m.invocations.get("step_runner", 0) == 0 or m is timed_runs["3-step transform, blocking"]:
            return m
        wall = dict(m.wall)
        for name in ("step_runner", "api" if m.invocations["api"] else "stream"):
            wall[name] += extra
        return Measured(m.runs, m.invocations, wall, m.cpu, m.log_bytes, m.read_units, m.records,
                        m.run_seconds + extra, m.kms_calls)

    timed_runs = {k: scale_wait(v) for k, v in timed_runs.items()}

    def uses(m: Measured, projection: str) -> dict[str, FunctionUse]:
        found = {n: FunctionUse(m.invocations[n], m.wall[n], m.cpu[n], m.log_bytes[n])
                 for n in ("api", "step_runner", "stream")}
        if projection == "per record":
            found["projector"] = FunctionUse(m.records, m.wall["projector"], m.cpu["projector"],
                                             m.log_bytes["projector"])
        else:
            found["projector"] = FunctionUse(m.records / PROJECTOR_BATCH_SIZE, batched_per_record[0] * m.records,
                                             batched_per_record[1] * m.records, batched_logs_per_record * m.records)
        return found

    xray_stream_fraction = default_sampled_fraction(RUNS_PER_MONTH / SECONDS_PER_MONTH)

    def cost(key: str, workflow: str, memory: dict[str, int], projection: str = "per record",
             run_cls: str | None = None) -> dict[str, float]:
        m, u = timed_runs[key], units[workflow]
        streamed = m.invocations["stream"] > 0
        # Traces recorded: the run's one trace (API → Step Functions → step runner), sampled
        # by the API stage's rule, or, streamed through the function URL, by the stream
        # function's (Lambda's, at a million runs a month); the projector records none of
        # its own (PassThrough: stream records carry no trace).
        function_uses = uses(m, projection)
        traces = xray_stream_fraction if streamed else XRAY_SAMPLED_PERCENT / 100
        # Reads: the run's own (section 7's meter: the step runner's and the projector's) and
        # the waits' (the blocking execute's, the SSE follower's), each counted once.
        return price(function_uses, memory,
                     units={"wcu": u["wcu"] + u["events_wcu"],
                            "rcu": u["rcu"] + u["events_rcu"] + m.read_units["api"] + m.read_units["stream"]},
                     storage_gb_month=storage[workflow] / 1024**3 * months, states=states,
                     run_class=run_cls or classes[workflow], run_seconds=m.run_seconds,
                     api_requests=0 if streamed else 1, traces=traces,
                     kms_calls=m.kms_calls)

    # ---- memory: each function's size for cost × duration, from the measured CPU and waits
    sizing_rows, chosen_memory = [], {}
    for name in FUNCTIONS:
        samples = [(m, uses(m, "per record")[name]) for m in timed_runs.values() if uses(m, "per record")[name].invocations]
        scores = {}
        row = [name]
        for mb in MEMORY_CHOICES:
            seconds = sum(lambda_seconds(u.wall, u.cpu, mb) / u.invocations for _, u in samples) / len(samples)
            usd = seconds * mb / 1024 * PRICES["lambda_per_gb_second_arm64"] * 1e6
            scores[mb] = usd * seconds
            row.append(f"{seconds * 1000:.0f} ms, ${usd:.2f}/M")
        cpu_share = sum(u.cpu for _, u in samples) / max(1e-9, sum(u.wall for _, u in samples))
        chosen_memory[name] = min(scores, key=lambda mb: (scores[mb], mb))
        sizing_rows.append(row + [f"{cpu_share:.0%}", f"{chosen_memory[name]} (now {MEMORY_MB[name]})"])

    memory = {name: MEMORY_MB[name] for name in FUNCTIONS}
    result = SectionResult("cost", "10. What a run costs: the complete model", method=__doc__.split("\n\n", 1)[1]
                           .replace("\n", " ").strip())
    headline = {
        "usd_per_million_runs_3": ("3-step transform, blocking", "transform", 35.0),
        "usd_per_million_ai_runs_blocking": ("AI, blocking", "ai", 80.0),
        "usd_per_million_ai_runs_streamed": ("AI, streamed", "ai", 120.0),
    }
    rows = []
    for key, (label, workflow, target) in headline.items():
        c = cost(label, workflow, memory)
        result.add(Figure(f"USD per million runs: {label} ({classes[workflow]}, model tokens excluded)",
                          f"${c['total']:.2f}", f"≤ {target:g}", c["total"] <= target, key=key,
                          number=round(c["total"], 2), unit="USD",
                          note=", ".join(f"{s} ${c[s]:.2f}" for s in SERVICES)))
        rows.append([label, classes[workflow], "per record", *(f"${c[s]:.2f}" for s in SERVICES), f"${c['total']:.2f}"])
        batched_cost = cost(label, workflow, memory, "per batch")
        rows.append([label, classes[workflow], f"per batch of {PROJECTOR_BATCH_SIZE}",
                     *(f"${batched_cost[s]:.2f}" for s in SERVICES), f"${batched_cost['total']:.2f}"])
    standard = cost("AI, blocking", "ai", memory, run_cls="standard")
    rows.append(["AI, blocking, if it ran Standard", "standard", "per record", *(f"${standard[s]:.2f}" for s in SERVICES),
                 f"${standard['total']:.2f}"])
    result.tables.append(
        f"USD per million runs by service (memory as configured: {memory}; projector per record = low traffic, "
        "per batch = high traffic; model tokens excluded):\n\n"
        + md_table(["run", "class", "projector", *SERVICES, "total"], rows))

    per_function = []
    for label, m in timed_runs.items():
        for name in FUNCTIONS:
            if m.invocations[name] or (name == "projector" and m.records):
                invocations = m.records if name == "projector" else m.invocations[name]
                per_function.append([label, name, f"{invocations:g}", f"{m.wall[name] * 1000:.0f} ms",
                                     f"{m.cpu[name] * 1000:.0f} ms", f"{m.log_bytes[name]:,.0f} B",
                                     f"{m.read_units[name]:.1f}"])
    result.tables.append(
        "Measured per run, per function (wall = the billed duration's measure, CPU = thread CPU; logs = "
        "bytes written to stdout at the shipped log level; reads = read units of the function's own reads: the "
        "blocking wait's and the SSE follower's):\n\n"
        + md_table(["run", "function", "invocations", "wall", "CPU", "logs", "read units"], per_function))
    result.tables.append(
        "Run's own DynamoDB units (section 7's meter), storage and counts:\n\n" + md_table(
            ["workflow", "WCU (table + indexes)", "events WCU", "RCU (run + projector)", "events RCU",
             "bytes kept", "states (Standard)", "KMS calls if the run had envs", "class under auto"],
            [[w, f"{u['wcu']:.1f}", f"{u['events_wcu']:.1f}", f"{u['rcu']:.1f}", f"{u['events_rcu']:.1f}",
              f"{storage[w]:,.0f}", states, f"{kms:g}", classes[w]] for w, u in units.items()]))
    result.tables.append(
        f"Memory: mean duration per invocation and USD per million invocations at each size (CPU-bound part × "
        f"{LAMBDA_FULL_VCPU_MB} MB / size, waits unchanged); chosen = least cost × duration. Peak RSS of this one "
        f"process running all four functions' heaviest paths (an upper bound for each): {peak_rss_mb:.0f} MB.\n\n"
        + md_table(["function", *(f"{mb} MB" for mb in MEMORY_CHOICES), "CPU share", "chosen"], sizing_rows))
    result.tables.append(f"Prices ({REGION}, list prices as of {AS_OF}; bench/prices.py):\n\n" + md_table(
        ["item", "USD"], [[k, f"{v:.10g}"] for k, v in PRICES.items()]))
    result.notes += [
        f"Model tokens are excluded: the simulated model streams {THINKING_CHUNKS} reasoning deltas over "
        f"{MODEL_SECONDS:g} s" + (f" (quick mode measured {model_seconds:g} s and adds the rest as I/O wait to the "
                                  "step runner, the API or stream function, and the run's duration)" if quick else "")
        + "; the step runner writes the reasoning at most once a second (the first delta at once; "
          "workflow_runs_step_runner.thinking): each write is a thinking item, a stream record and an event.",
        f"Storage: bytes kept per run × {months:.2f} months ({retention_note}) × the GB-month price.",
        (f"X-Ray: one trace per run (API → Step Functions → step runner), recorded at the API stage's own rule "
        f"({XRAY_SAMPLED_PERCENT} %, no reservoir) for a blocking run; a run streamed through the function URL is "
        f"recorded at Lambda's fixed rule (the first request a second, then 5 %), {xray_stream_fraction:.0%} of "
        f"runs at {RUNS_PER_MONTH:,} runs a month. The projector records none (PassThrough). KMS: the calls the real "
        "sealer made in the timed runs (these runs have no envs: none); a run with envs adds "
        f"{kms:g} (sealed once, opened once per step on a fresh environment, the worst case) = "
        f"${kms * PRICES['kms_per_request'] * 1e6:.2f} per million; the tables' key is cached by DynamoDB, not per run. API Gateway: a blocking execute is one REST request; a streamed run comes through the "
        "function URL (no charge). CloudWatch Logs: the functions' JSON logs and EMF lines; Lambda's platform "
        "lines (START/END/REPORT) are off (system log level WARN)."),
        ("Lambda durations are this machine's, in one process; a function's CPU-bound part is scaled to its memory "
         f"({LAMBDA_FULL_VCPU_MB} MB = one vCPU), its waits (DynamoDB, the model, the blocking wait) are not. The "
         "API's logs are the service's records only (its HTTP layer, Mangum, is not in this harness)."),
    ]
    return result
