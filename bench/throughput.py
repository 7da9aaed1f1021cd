"""6. Throughput on the local runtime: the 3-step transform example, 20 concurrent blocking
executes for a bounded time, against the store-bound limit measured in the same run:

    limit = 1 / (DynamoDB requests per run × mean request time)

i.e. the runs per second one DynamoDB request at a time could carry. Both factors come from
botocore hooks on the runtime's store client during the load (every table request of the
API, the orchestrator's step runner and the projector goes through it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import Figure, SectionResult, md_table, median, ms, percentile
from .meter import RequestMeter

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_ID = "0f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d02"  # examples/three-step-transform.yaml
CONCURRENCY = 20
TARGET = 0.5


def run(quick: bool) -> SectionResult:
    import logging

    logging.disable(logging.WARNING)
    from workflow_runs_dev.dynamodb_local import free_port
    from workflow_runs_dev.runtime import LocalRuntime

    runtime = LocalRuntime(port=free_port(), internal_port=free_port(), dynamodb="local", env={},
                           examples_dir=ROOT / "examples").start()
    try:
        return _measure(runtime, quick)
    finally:
        runtime.stop()


def _measure(runtime: Any, quick: bool) -> SectionResult:
    if not any(str(e.workflow.id) == WORKFLOW_ID for e in runtime.loaded_examples):
        raise RuntimeError(f"examples/three-step-transform.yaml ({WORKFLOW_ID}) was not loaded")
    warmup_seconds, seconds, calibration_seconds = (1.0, 4.0, 1.5) if quick else (5.0, 30.0, 6.0)
    store_meter = RequestMeter(runtime.store.client, consumed_capacity=False)
    stream_meter = RequestMeter(runtime._poller._client, consumed_capacity=False)

    # Warm-up: runs end to end (imports, connections, and DynamoDB Local's JIT, which needs a few
    # thousand requests before its latency settles).
    _load(runtime, concurrency=4, seconds=warmup_seconds)
    runtime._poller.wait_idle(timeout=30)
    store_meter.reset()
    stream_meter.reset()

    load = _load(runtime, concurrency=CONCURRENCY, seconds=seconds)
    runtime._poller.wait_idle(timeout=60)  # the projector's share of these runs, too
    store, stream = store_meter.snapshot(), stream_meter.snapshot()

    # Calibration, after the load (the store at its warmest: the conservative choice): one
    # execute at a time, so each request meets an idle store — the mean request time of the
    # same operation mix without queueing, the limit's denominator.
    store_meter.reset()
    calibration = _load(runtime, concurrency=1, seconds=calibration_seconds)
    runtime._poller.wait_idle(timeout=30)
    serial = store_meter.snapshot()

    completed = load["outcomes"].get("200 completed", 0)
    if not completed:
        raise RuntimeError(f"no run completed: {load['outcomes']}")
    runs_per_second = completed / load["elapsed"]
    per_run = store.requests / completed
    mean_request = serial.mean_seconds  # unloaded service time (calibration, same run)
    loaded_request = store.mean_seconds
    limit = 1.0 / (per_run * mean_request)
    serial_runs = calibration["outcomes"].get("200 completed", 0)
    ratio = runs_per_second / limit
    latencies = load["latencies"]

    result = SectionResult(
        "throughput",
        "6. Throughput on the local runtime",
        method=(
            "`LocalRuntime` with DynamoDB Local and the examples loaded; the load runs in a separate process "
            f"(`bench/load_client.py`): {CONCURRENCY} threads, each sending blocking "
            "`POST /api/v1/workflow-runs/execute` for the 3-step transform example "
            f"(`{WORKFLOW_ID}`) back to back for {seconds:.0f} s (then finishing the one in flight), after a "
            f"{warmup_seconds:.0f} s warm-up. The mean request time is calibrated in the same run, after the "
            f"load, with ONE execute at a time for {calibration_seconds:.0f} s (the same operation mix, no queueing). Requests and their "
            "client-observed time are counted by botocore hooks on the "
            "runtime's store client (API, orchestrator + step runner, projector); the stream poller's "
            "GetRecords are counted apart. The run's events are awaited (`wait_idle`) before counting. "
            "Figure: runs/s ÷ (1 / (requests per run × mean request time))."
        ),
    )
    result.add(
        Figure("throughput / store-bound limit (3-step transform, 20 concurrent executes)",
               f"{ratio:.0%} ({runs_per_second:.1f} runs/s vs {limit:.1f} runs/s)", f"≥ {TARGET:.0%}",
               ratio >= TARGET),
    )
    result.tables.append(md_table(["", ""], [
        ["runs completed (200, `completed`)", f"{completed} in {load['elapsed']:.1f} s"],
        ["all outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(load["outcomes"].items()))],
        ["runs per second", f"{runs_per_second:.2f}"],
        ["execute latency p50 / p99", f"{ms(median(latencies))} / {ms(percentile(latencies, 99))}"],
        ["DynamoDB table requests per run", f"{per_run:.1f} ({_per_run(store, completed)})"],
        ["mean request time, one execute at a time (calibration)",
         (f"{ms(mean_request)} over {serial.requests} requests ({serial_runs} runs, "
          f"{serial_runs / calibration['elapsed']:.2f} runs/s serially)")],
        ["mean request time under the load (client-observed, queueing included)", ms(loaded_request)],
        ["store-bound limit = 1 / (requests per run × calibrated mean)", f"{limit:.2f} runs/s"],
        ["DynamoDB requests in flight on average under the load (requests/s × loaded mean)",
         f"{store.requests / load['elapsed'] * loaded_request:.2f}"],
        ["stream reads (poller, not per run)", f"{stream.describe()}, mean {ms(stream.mean_seconds)}"],
        ["local orchestrator workers", str(getattr(runtime._orchestrator._pool, "_max_workers", "?"))],
    ]))
    result.notes.append(
        "At 100% the runtime would keep the store busy as if its requests ran back to back at their unloaded "
        "speed; above 100% means requests overlap (DynamoDB Local serves several at once). Everything server-side (uvicorn with both apps, the local "
        "orchestrator's workers running the step runner, the stream poller and the projector) shares one Python "
        "process, so on a small machine the interpreter, not DynamoDB Local, is usually what saturates; the "
        "blocking execute's status polls (consistent GetItem, 20 ms ×1.5 backoff up to 0.5 s) are part of the "
        "requests per run.")
    serial_rate = serial_runs / calibration["elapsed"] if calibration["elapsed"] else 0.0
    if serial_rate and runs_per_second < serial_rate * 1.2:
        result.notes.append(
            f"Concurrency buys nothing here: {CONCURRENCY} concurrent executes complete {runs_per_second:.2f} runs/s, "
            f"one at a time {serial_rate:.2f} runs/s, while the mean request time grows from {ms(mean_request)} to "
            f"{ms(loaded_request)}. The server process is saturated (its threads queue for the interpreter, and "
            "every waiting execute keeps polling the run's status: "
            f"{store.calls.get('GetItem', 0) / completed:.1f} GetItem per run under load, one of them the workflow read). For the dev server "
            "this is fine; it is not a model of Lambda, where each invocation has its own interpreter.")
    if ratio < TARGET:
        result.notes.append(
            f"Missed ({ratio:.0%} < {TARGET:.0%}): the store is idle most of the time, i.e. the runs wait on "
            "something else — Python CPU in the single server process, the orchestrator's worker limit, or the "
            "execute's poll backoff (a finished run is noticed only at the next poll). Fixes: more orchestrator "
            "workers, polling the status with a shorter cap, or running the apps and the orchestrator in "
            "separate processes.")
    return result


def _per_run(snap: Any, runs: int) -> str:
    return ", ".join(f"{op} {n / runs:.1f}" for op, n in sorted(snap.calls.items()))


def _load(runtime: Any, *, concurrency: int, seconds: float) -> dict:
    command = [sys.executable, "-m", "bench.load_client", runtime.public_url, runtime.token, WORKFLOW_ID,
               str(concurrency), str(seconds)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 90,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the load client failed: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
