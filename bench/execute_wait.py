"""9. The blocking execute on the local runtime: how late it answers after its run ends,
and what its wait reads.

`execute_answer_lag_p50_ms`: from the run's terminal write (its `updatedAt`) to the response
of `POST /api/v1/workflow-runs/execute` reaching a client on the same machine.
`execute_wait_reads_per_second`: the DynamoDB reads the wait makes (event-log Queries and
status GetItems), per second of waiting. Both are measured for the wait as it is (watching
the run's event log, woken by its closing event) and, side by side, for the status poll it
replaced (a status GetItem after pauses growing ×1.5 from 20 ms to 0.5 s), replayed here."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from . import Figure, SectionResult, md_table, median, ms, percentile

SHAPES = {
    # Busy to its end: the echo model streams `thinking` until the run ends.
    "busy to the end (transform, llm)": {"name": "bench busy", "steps": [
        {"id": "prompt", "type": "transform", "config": {"output": "Say something about tides."}},
        {"id": "ask", "type": "llm", "config": {"prompt": "{{ steps.prompt.outputs.value }}"}}]},
    # Quiet, then ends at once (examples/wait-then-finish.yaml): the log is idle when the end comes.
    "quiet, then ends (wait 2 s, transform)": {"name": "bench quiet", "steps": [
        {"id": "pause", "type": "wait", "config": {"seconds": 2}},
        {"id": "finish", "type": "transform", "config": {"output": "done"}}]},
}


def status_poll_execute(service: Any, tenant: str, request: Any, idempotency_key: str | None = None, *,
                        subject: str = "", deadline: float | None = None) -> tuple[Any, bool]:
    """The wait this change replaced, as it was (a copy, for the side-by-side figure)."""
    run = service.start_run(tenant, request, idempotency_key, subject=subject)
    deadline = deadline if deadline is not None else time.monotonic() + service.settings.execute_wait_seconds
    pause = 0.02
    status = run.status
    while not status.terminal and time.monotonic() < deadline:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.5)
        status = service.store.run_status(run.id) or status
    final = service.store.get_run(tenant, run.id) if status is not run.status or status.terminal else run
    return final, final.status.terminal


class WaitMeter:
    """Counts the wait's reads: store calls made inside `service.execute` after the run started."""

    def __init__(self, service: Any):
        self.service, self.local = service, threading.local()
        self.samples: list[tuple[int, float]] = []  # (reads, seconds waited) per execute
        store = service.store
        for name in ("events_after", "run_status"):
            setattr(store, name, self._counted(getattr(store, name)))
        start_run = service._start_run  # both waits start the run through it

        def timed_start_run(*args: Any, **kwargs: Any) -> Any:
            started = start_run(*args, **kwargs)
            self.local.reads, self.local.waiting_since = 0, time.perf_counter()
            return started

        service._start_run = timed_start_run

    def _counted(self, method: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if getattr(self.local, "waiting_since", None) is not None:
                self.local.reads += 1
            return method(*args, **kwargs)

        return counted

    def use(self, execute: Any) -> None:
        def measured(*args: Any, **kwargs: Any) -> Any:
            self.local.waiting_since = None
            try:
                return execute(*args, **kwargs)
            finally:
                if self.local.waiting_since is not None:
                    self.samples.append((self.local.reads, time.perf_counter() - self.local.waiting_since))
                self.local.waiting_since = None

        self.service.execute = measured


def run(quick: bool) -> SectionResult:
    import logging

    logging.disable(logging.WARNING)
    from workflow_runs_dev.dynamodb_local import free_port
    from workflow_runs_dev.runtime import LocalRuntime

    # A DynamoDB Local of its own for the figures: in a full run the shared one already holds
    # the scale and contention sections' thousands of runs and their streams, and every
    # request to it (the stream poller's above all) is slower for it, so the lag would be
    # that instance's, not the wait's (measured: ~500 ms on the shared one, both waits
    # alike). `--quick` only proves the section runs: there the shared one saves a start.
    endpoint = os.environ.get("BENCH_DYNAMODB_ENDPOINT") if quick else None
    suffix = uuid.uuid4().hex[:10]
    env = {"RUNS_TABLE": f"bench-runs-{suffix}", "EVENTS_TABLE": f"bench-events-{suffix}"} if endpoint else {}
    runtime = LocalRuntime(port=free_port(), internal_port=free_port(), dynamodb="local", dynamodb_endpoint=endpoint,
                           env=env, examples_dir=None).start()
    try:
        return _measure(runtime, quick)
    finally:
        runtime.stop()


def _measure(runtime: Any, quick: bool) -> SectionResult:
    import httpx
    from workflow_runs.models import WorkflowDefinition
    from workflow_runs_dev.runtime import DEV_TENANT

    service = runtime.service
    event_log_execute = service.execute
    meter = WaitMeter(service)
    workflows = {shape: service.put_workflow(DEV_TENANT, str(uuid.uuid4()), WorkflowDefinition.model_validate(d)).id
                 for shape, d in SHAPES.items()}
    n = 1 if quick else 15
    url = f"{runtime.public_url}/api/v1/workflow-runs/execute"
    headers = {"Authorization": f"Bearer {runtime.token}"}
    waits = {"event log (now)": event_log_execute,
             "status poll (before)": lambda *a, **k: status_poll_execute(service, *a, **k)}
    lags: dict[tuple[str, str], list[float]] = {}
    reads: dict[tuple[str, str], list[tuple[int, float]]] = {}
    with httpx.Client(timeout=30) as client:
        for _ in range(1 if quick else 2):  # warm: connections, DynamoDB Local's JIT, the step runner's imports
            client.post(url, headers=headers, files={"workflowId": (None, next(iter(workflows.values())))})
        for i in range(n):
            for wait_name, execute in (waits.items() if i % 2 == 0 else reversed(waits.items())):
                meter.use(execute)
                for shape, workflow_id in workflows.items():
                    meter.samples.clear()
                    response = client.post(url, headers=headers, files={"workflowId": (None, workflow_id)})
                    received = time.time()
                    run = response.json()["workflowRun"]
                    if response.status_code != 200 or run["status"] != "completed":
                        raise RuntimeError(f"execute answered {response.status_code} {run['status']}")
                    ended = datetime.fromisoformat(run["updatedAt"]).timestamp()
                    lags.setdefault((wait_name, shape), []).append(received - ended)
                    reads.setdefault((wait_name, shape), []).extend(meter.samples)

    def of(wait_name: str) -> tuple[list[float], float]:
        lag = [x for (w, _), values in lags.items() if w == wait_name for x in values]
        count = sum(r for (w, _), values in reads.items() if w == wait_name for r, _ in values)
        seconds = sum(s for (w, _), values in reads.items() if w == wait_name for _, s in values)
        return lag, count / seconds

    now_lag, now_rps = of("event log (now)")
    before_lag, before_rps = of("status poll (before)")
    settings = runtime.settings
    result = SectionResult(
        "execute-wait", "9. The blocking execute: answer lag and reads while waiting",
        method=(
            "`LocalRuntime` on free ports with DynamoDB Local (the real step runner, stream poller and projector); an "
            "httpx client POSTs a multipart `execute` (bearer token) and notes when the 200 arrives; the lag is that "
            "moment less the run's terminal `updatedAt` (same machine, same clock). Two workflows: "
            + "; ".join(f"*{s}*" for s in SHAPES) + f"; {n} runs of each, per wait, the two waits alternating. Reads "
            "are the store calls the wait makes (event-log Queries, status GetItems) after the run started, divided by "
            "the seconds from then to the answer. The *status poll (before)* is the removed loop, replayed in the "
            f"bench. Pacing: `sse_poll_min_seconds` {ms(settings.sse_poll_min_seconds)}, `sse_poll_max_seconds` "
            f"{ms(settings.sse_poll_max_seconds)}."
        ),
    )
    now_p50, before_p50 = median(now_lag), median(before_lag)
    result.add(
        Figure("execute answer lag p50", ms(now_p50), "≤ 100 ms", now_p50 <= 0.100, key="execute_answer_lag_p50_ms",
               number=round(now_p50 * 1000, 1), unit="ms", note=f"{len(now_lag)} runs"),
        Figure("execute answer lag p50, status poll (before)", ms(before_p50),
               key="execute_answer_lag_p50_ms_status_poll", number=round(before_p50 * 1000, 1), unit="ms"),
        Figure("execute wait reads per second", f"{now_rps:.2f} /s", f"≤ the status poll's {before_rps:.2f} /s",
               now_rps <= before_rps, key="execute_wait_reads_per_second", number=round(now_rps, 2), unit="/s"),
        Figure("execute wait reads per second, status poll (before)", f"{before_rps:.2f} /s",
               key="execute_wait_reads_per_second_status_poll", number=round(before_rps, 2), unit="/s"),
    )
    rows = []
    for (wait_name, shape), values in sorted(lags.items()):
        samples = reads[(wait_name, shape)]
        rps = sum(r for r, _ in samples) / sum(s for _, s in samples)
        rows.append([wait_name, shape, len(values), ms(median(values)), ms(percentile(values, 90)), ms(max(values)),
                     f"{rps:.2f}"])
    result.tables.append(md_table(["wait", "workflow", "runs", "lag p50", "lag p90", "lag max", "reads/s"], rows))
    return result
