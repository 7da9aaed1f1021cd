"""8. Contention: runs of one tenant on a DynamoDB that conflicts and throttles as AWS does
under load.

`workflow-runs dev` (`LocalRuntime`: the local orchestrator running the real step runner) on
DynamoDB Local, with `workflow_runs_dev.faults.FaultInjector` between them: 20% of the
transactions are cancelled with `TransactionConflict`, 10% of all requests are throttled
(tests/contention has the details, and also conflicts every transaction overlapping another
in flight). Runs of a 3-step
transform workflow are started at once through the service (the API's execute, without
HTTP); then, with the faults suspended, every accepted run is read back.
A lost transition is a run that did not end `completed` (every run of this workflow
completes), or a status the counters disagree on (dashboard minus a recount, summed).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import Figure, SectionResult, md_table
from .dynamodb_cost import TENANT, dynamodb_endpoint, transform_workflow

CONFLICT_RATE, THROTTLE_RATE, SEED = 0.2, 0.1, 7


def run(quick: bool) -> SectionResult:
    logging.disable(logging.WARNING)
    with dynamodb_endpoint() as endpoint:
        return _measure(endpoint, 40 if quick else 100)


@contextlib.contextmanager
def faulty_runtime(endpoint: str, faults: Any) -> Iterator[tuple[Any, Any, Any]]:
    """`workflow-runs dev` on fresh tables of `endpoint`, with `faults` between it and DynamoDB
    (not the projector's client), and a 3-step transform workflow: (service, store, workflow)."""
    from workflow_runs_dev.dynamodb_local import free_port
    from workflow_runs_dev.runtime import LocalRuntime

    suffix = uuid.uuid4().hex[:8]
    runtime = LocalRuntime(port=free_port(), internal_port=free_port(), dynamodb_endpoint=endpoint, faults=faults,
                           projector_faults=False, retry_interval_scale=0.001,
                           env={"RUNS_TABLE": f"bench-runs-{suffix}", "EVENTS_TABLE": f"bench-events-{suffix}"})
    runtime.start()
    try:
        service, store = runtime.service, runtime.store
        assert service is not None and store is not None
        with faults.suspended():
            workflow = service.put_workflow(TENANT, str(uuid.uuid4()), transform_workflow(3))
        yield service, store, workflow
    finally:
        runtime.stop()


def _measure(endpoint: str, count: int) -> SectionResult:
    from workflow_runs.errors import Unavailable
    from workflow_runs.service import ExecuteRequest
    from workflow_runs_dev.faults import FaultInjector

    # The overlap rule is off here: in one busy Python process a transaction stays "in flight"
    # while its thread waits for the interpreter, so it would make far more conflicts than
    # DynamoDB does; tests/contention keeps it on. Here the rates are exactly the stated ones.
    faults = FaultInjector(conflict_rate=CONFLICT_RATE, throttle_rate=THROTTLE_RATE, seed=SEED, overlap=False)
    with faulty_runtime(endpoint, faults) as (service, store, workflow):

        def start(_: int) -> str | None:
            try:
                return service.start_run(TENANT, ExecuteRequest(workflow_id=workflow.id, inputs={"name": "x"})).id
            except Unavailable:
                return None

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(start, range(count)))
        accepted = [run_id for run_id in outcomes if run_id]
        deadline = time.monotonic() + 180
        while True:
            with faults.suspended():
                statuses = {run_id: store.run_status(run_id) for run_id in accepted}
            if all(s is not None and s.terminal for s in statuses.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        with faults.suspended():
            counted = store.counts(TENANT, workflow.id)
        recount = Counter(s.value for s in statuses.values() if s is not None)
        miscounted = sum(abs(counted[k] - recount.get(k, 0)) for k in counted)
        not_completed = sum(1 for s in statuses.values() if s is None or s.value != "completed")
        lost = not_completed + miscounted
        stats = dict(faults.stats)
        retried = dict(store.db.retried)
    result = SectionResult("contention", "8. Contention: one tenant on a conflicting, throttling DynamoDB",
                           method=__doc__.split("\n\n", 1)[1].replace("\n", " ").strip())
    rate = len(accepted) / elapsed
    result.add(
        Figure("lost transitions under injected conflicts and throttles", f"{lost} of {len(accepted)} runs", "0",
               lost == 0, key="contention_lost_transitions", number=lost, unit="runs"),
        Figure("runs per second under injected faults (3-step transform, one tenant)", f"{rate:.1f} runs/s", "—",
               None, key="contention_runs_per_s", number=round(rate, 2), unit="runs/s",
               note="one Python process runs the API, the orchestrator and every step here: a floor, not AWS's rate"),
    )
    result.tables.append(md_table(["", ""], [
        ["runs started / accepted / answered 503", f"{count} / {len(accepted)} / {count - len(accepted)}"],
        ["runs not completed", not_completed],
        ["dashboard minus recount (summed over statuses)", miscounted],
        ["injected (by kind)", ", ".join(f"{k} {v}" for k, v in sorted(stats.items()) if v)],
        ["retried by the store (by reason)", ", ".join(f"{k} {v}" for k, v in sorted(retried.items())) or "none"],
        ["wall time, first start to last run ended", f"{elapsed:.1f} s"],
    ]))
    return result
