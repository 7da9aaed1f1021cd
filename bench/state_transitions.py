"""4. State transitions per run: the real `infra/state_machine.asl.json` executed by moto's
Step Functions interpreter (the integration tests' harness, tests/integration/sfn_harness.py),
its Lambda tasks answered by the real step runner handler reading and writing DynamoDB
Local. Counted: the states entered (`*StateEntered` events of `get_execution_history`),
which is what Standard workflows bill as state transitions."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter

from . import Figure, SectionResult, md_table
from .dynamodb_cost import STEP_COUNTS, TENANT, client, dynamodb_endpoint, fresh_settings, transform_workflow


def run(quick: bool) -> SectionResult:
    with dynamodb_endpoint() as endpoint:
        return _measure(endpoint)


def count_states(endpoint: str, kind: str = "STANDARD", repeat: int = 1) -> dict[int, dict]:
    """Run N-step transform runs (`repeat` per N) through the ASL under moto, as a STANDARD
    or an EXPRESS machine; per N: the last execution's status, the states it entered, the
    Lambda invocations and the run's final status, and every execution's measured duration
    (start to end, Lambda tasks included: what an Express execution bills)."""
    import logging

    logging.disable(logging.WARNING)
    from workflow_runs.models import RunInput
    from workflow_runs.settings import get_settings
    from workflow_runs.store import NewRun, RunStore, dynamodb_client
    from workflow_runs_dev import dynamodb_local
    from workflow_runs_step_runner import handler as step_runner

    from tests.integration.sfn_harness import state_machine

    settings = fresh_settings(endpoint)
    setup_store = RunStore(settings, client=client(endpoint))
    dynamodb_local.create_tables(setup_store.client, settings.runs_table, settings.events_table)
    # The step runner's Lambda environment, as the stack sets it; its collaborators are built
    # now, outside mock_aws (moto swaps the credentials, and DynamoDB Local keeps one database
    # per access key).
    os.environ.update({"RUNS_TABLE": settings.runs_table, "EVENTS_TABLE": settings.events_table,
                       "DYNAMODB_ENDPOINT_URL": endpoint, "LOCAL_SECRET_KEY": settings.local_secret_key or ""})
    get_settings.cache_clear()
    dynamodb_client.cache_clear()
    step_runner.collaborators.cache_clear()
    step_runner.collaborators()

    runs: dict[int, list[str]] = {}
    for steps in STEP_COUNTS:
        workflow = setup_store.put_workflow(TENANT, str(uuid.uuid4()), transform_workflow(steps))
        runs[steps] = []
        for _ in range(repeat):
            run_id = str(uuid.uuid4())
            setup_store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow,
                                          inputs=[RunInput(name="name", value="world")],
                                          orchestration=kind.lower()))
            runs[steps].append(run_id)
    counted: dict[int, dict] = {}
    with state_machine(step_runner.handler, kind) as machine:
        for steps, run_ids in runs.items():
            seconds = []
            for run_id in run_ids:
                invocations_before = len(machine.router.events)
                started = time.perf_counter()
                arn, status = machine.run(run_id, timeout=60)
                seconds.append(time.perf_counter() - started)
                counted[steps] = {"status": status, "entered": machine.entered_states(arn),
                                  "invocations": len(machine.router.events) - invocations_before}
            counted[steps]["seconds"] = seconds
    for steps, run_ids in runs.items():
        final = setup_store.run_status(run_ids[-1])
        counted[steps]["final"] = final.value if final else "?"
    return counted


def _measure(endpoint: str) -> SectionResult:
    counted = count_states(endpoint)
    result = SectionResult(
        "transitions",
        "4. State transitions per run",
        method=(
            "`infra/state_machine.asl.json` (CDK substitutions applied) runs under moto's Step Functions "
            "interpreter (`mock_aws` with `execute_state_machine`), through the integration tests' harness "
            "`tests/integration/sfn_harness.py`; each Lambda task is answered in-process by the real "
            "`workflow_runs_step_runner.handler.handler`, which reads and writes DynamoDB Local. One run of an "
            "N-step transform workflow per N; counted: `*StateEntered` events in `get_execution_history`."
        ),
    )
    rows = []
    for steps, c in counted.items():
        entered, status = c["entered"], c["status"]
        bound = 2 * steps + 4
        holds = status == "SUCCEEDED" and len(entered) <= bound
        counts = Counter(entered)
        rows.append([steps, status, len(entered), ", ".join(f"{n} {k}" for n, k in counts.items()),
                     c["invocations"], f"≤ {bound}"])
        result.add(Figure(f"states entered, {steps}-step run", f"{len(entered)} ({status})", f"≤ 2N + 4 = {bound}",
                          holds, key=f"states_entered_{steps}", number=len(entered), unit="states"))
    result.tables.append(md_table(["N", "execution", "states entered", "which", "Lambda invocations", "target"], rows))
    result.notes.append(
        "Each step costs two transitions (`RunStep`, then the `Route` Choice); the run ends with `Done`: "
        "2N + 1 for a run without retries or waits. A retry happens inside `RunStep` (no extra transition); a "
        "`wait` step adds `Wait` and another `RunStep`/`Route`. Runs ended: "
        + ", ".join(f"N={n} {c['final']}" for n, c in counted.items()) + ".")
    return result
