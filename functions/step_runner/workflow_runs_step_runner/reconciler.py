"""The reconciler: no run stays non-terminal after its execution ended.

Two triggers, one handler:
- EventBridge "Step Functions Execution Status Change" (FAILED, TIMED_OUT, ABORTED): the
  execution name is the run id. A run that is still non-terminal becomes `failed` (the
  reason in `error.message`) or, for ABORTED, `cancelled` (the reason in `cancelReason`).
  An execution the step runner ended itself (a failed run ends in the Fail state) finds its
  run already terminal: nothing happens.
- A scheduled event: the sweep. Non-terminal runs come from the sparse "active" index (no
  Scan). A Standard run created before now − RECONCILE_AFTER_SECONDS whose execution is not
  RUNNING (or does not exist: the start was lost) is closed the same way. An Express run
  (no status events, no DescribeExecution by name) still open six minutes after its
  creation has outlived any Express execution: it is failed without asking. A lost event,
  a crashed step runner, a start that never happened: all end here.

A third duty, the repair: a run whose event log never got its closing event (the
projector's attempts ran out on the record of its end) has it written from its status
(`repair`, workflow_runs.closing), so every log ends whatever the projector met. In AWS its
trigger is the projector's on-failure queue (`repair_failed_batches`): each message holds a
failed batch's stream coordinates; its records are read back from the stream and every run
among them that has ended gets its closing event. A message that cannot be read is reported
as a batch item failure, retried, then parked in the queue's own dead-letter queue.

Every write is conditional on the old status (TransitionRejected = someone else settled
it first), so a repeated event or two sweeps at once change nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from workflow_runs import telemetry
from workflow_runs.lambda_entry import LambdaEntry
from workflow_runs.states import EXPRESS, EXPRESS_ENDED, EXPRESS_MAX_SECONDS

if TYPE_CHECKING:  # the handler imports the domain lazily (cold start)
    from workflow_runs.ending import EndingStore
    from workflow_runs.orchestrator import Orchestrator
    from workflow_runs.store.records import StaleRun

    class SweepStore(EndingStore, Protocol):
        """What the reconciler asks of the store: the stale runs, and ending one."""

        def stale_runs(self, created_before: str, limit: int = 500) -> list[StaleRun]: ...


EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"
ENDED_BADLY = ("FAILED", "TIMED_OUT", "ABORTED")
# No Express execution outlives EXPRESS_MAX_SECONDS; a minute more covers clock skew and a
# start that came a little after the run's creation.
EXPRESS_SETTLE_AFTER_SECONDS = EXPRESS_MAX_SECONDS + 60


def reconcile(
    event: dict[str, Any],
    *,
    store: SweepStore,
    orchestrator: Orchestrator,
    stale_after_seconds: int = 900,
    now: datetime | None = None,
    logger: Any = None,
) -> dict[str, Any]:
    """Settle one execution (status change event) or sweep stale runs (any other event:
    EventBridge schedules send "Scheduled Event")."""
    log = logger or _logger()
    if event.get("detail-type") == EXECUTION_STATUS_CHANGE:
        detail = event.get("detail") or {}
        run_id, status = detail.get("name"), detail.get("status")
        if not run_id or status not in ENDED_BADLY:
            return {"settled": 0}
        settled = settle(store, run_id, status, log=log)
        return {"settled": int(settled)}
    return sweep(store, orchestrator, stale_after_seconds=stale_after_seconds, now=now, log=log)


def sweep(
    store: SweepStore, orchestrator: Orchestrator, *, stale_after_seconds: int, now: datetime | None = None,
    log: Any = None
) -> dict[str, Any]:
    """Standard runs older than `stale_after_seconds` are asked about (DescribeExecution);
    Express runs older than EXPRESS_SETTLE_AFTER_SECONDS are settled without asking: an
    Express execution cannot be described by name, emits no status events, and cannot
    outlive its five minutes, so a run still open after that has lost its execution."""
    from workflow_runs.models import timestamp  # deferred: cold start

    log = log or _logger()
    now = now or datetime.now(UTC)
    cutoff = timestamp(now - timedelta(seconds=stale_after_seconds))
    express_cutoff = timestamp(now - timedelta(seconds=EXPRESS_SETTLE_AFTER_SECONDS))
    checked = settled = 0
    for run in store.stale_runs(max(cutoff, express_cutoff)):
        express = run.orchestration == EXPRESS
        if run.created_at >= (express_cutoff if express else cutoff):
            continue  # young enough for its class: its execution may still own it
        checked += 1
        if express:
            settled += int(settle(store, run.run_id, EXPRESS_ENDED, log=log))
            continue
        try:
            status = orchestrator.describe(run.run_id)
        except Exception:
            log.exception("describe failed; the next sweep tries again", extra={"run_id": run.run_id})
            continue
        if status == "RUNNING":
            continue  # a long wait, or a slow step: its execution still owns the run
        settled += int(settle(store, run.run_id, status, log=log))
    log.info("sweep done", extra={"checked": checked, "settled": settled, "cutoff": cutoff,
                                  "express_cutoff": express_cutoff})
    return {"checked": checked, "settled": settled}


def settle(store: EndingStore, run_id: str, execution_status: str | None, *, log: Any = None) -> bool:
    """End a non-terminal run whose execution is `execution_status` (None: there is none).
    True when this call changed the run."""
    from workflow_runs.ending import end_from_outside
    from workflow_runs.models import RunError
    from workflow_runs.states import Status

    from workflow_runs_step_runner.runner import in_flight

    log = log or _logger()

    def error_of(record: Any) -> RunError | None:
        index, _ = in_flight(record)
        step_id = record.steps[index].id if index is not None else None
        return RunError(message=_failure_message(execution_status), step_id=step_id)

    if execution_status == "ABORTED":
        ending = end_from_outside(store, run_id, Status.CANCELLED, cancel_reason="the run's execution was stopped")
    else:
        ending = end_from_outside(store, run_id, Status.FAILED, error=error_of)
    if ending.record is None:
        log.warning("execution of an unknown run", extra={"run_id": run_id})
    if ending.changed:
        log.warning("run settled by the reconciler",
                    extra={"run_id": run_id, "execution_status": execution_status, "was": ending.before.value
                           if ending.before else None})
    return ending.changed


def repair(store: Any, run_id: str, *, log: Any = None) -> bool:
    """Re-project an ended run whose event log is behind its status: its closing events
    written from the run item. True when it wrote them."""
    from workflow_runs.closing import repair_log

    repaired = repair_log(store, run_id)
    if repaired:
        (log or _logger()).warning("event log repaired: its closing event written from the run's status",
                                   extra={"run_id": run_id})
    return repaired


def repair_failed_batches(event: dict[str, Any], *, store: Any, streams: Any, log: Any = None) -> dict[str, Any]:
    """An SQS batch from the projector's on-failure queue: each body is an invocation record
    whose DDBStreamBatchInfo names a failed range of the runs table's stream. The runs of its
    records are repaired (an ended run whose log has no closing event gets it; a run still
    going or a closed log: nothing). A message whose range cannot be read, or whose repair
    fails, is a batch item failure: SQS gives it again, then its dead-letter queue keeps it."""
    import json

    from workflow_runs.store.stream_range import runs_in_range

    log = log or _logger()
    failures = []
    for message in event.get("Records") or []:
        try:
            batch = json.loads(message["body"])["DDBStreamBatchInfo"]
            for run_id in sorted(runs_in_range(streams, batch)):
                repair(store, run_id, log=log)
        except Exception:
            log.exception("a failed stream batch could not be repaired; SQS gives it again",
                          extra={"message_id": message.get("messageId")})
            failures.append({"itemIdentifier": message.get("messageId")})
    return {"batchItemFailures": failures}


def _is_sqs(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    first = records[0] if isinstance(records, list) and records else None
    return isinstance(first, dict) and first.get("eventSource") == "aws:sqs"


def _failure_message(execution_status: str | None) -> str:
    # Only the status, never the execution's error cause: a cause is free text that was
    # not masked against the run's envs.
    if execution_status == "TIMED_OUT":
        return "the run's execution timed out"
    if execution_status is None:
        return "the run's execution never started"
    if execution_status == "FAILED":
        return "the run's execution failed"
    if execution_status == EXPRESS_ENDED:
        return "the run's execution ended before the run did (an Express execution lasts at most 5 minutes)"
    return f"the run's execution ended ({execution_status}) before the run did"


def _logger() -> Any:
    return telemetry.get_logger(telemetry.RECONCILER)


@lru_cache(maxsize=1)
def collaborators() -> dict[str, Any]:
    from workflow_runs.orchestrator import StepFunctionsOrchestrator
    from workflow_runs.settings import get_settings
    from workflow_runs.store import RunStore

    settings = get_settings()
    if not settings.state_machine_arn:
        raise RuntimeError("missing required setting: STATE_MACHINE_ARN")
    return {
        "store": RunStore(settings),
        "orchestrator": StepFunctionsOrchestrator(settings.state_machine_arn, settings.express_state_machine_arn),
        "stale_after_seconds": settings.reconcile_after_seconds,
    }


@lru_cache(maxsize=1)
def streams_client() -> Any:
    from workflow_runs.settings import get_settings
    from workflow_runs.store.stream_range import streams_client as make

    return make(get_settings().dynamodb_endpoint_url)


def _handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    if _is_sqs(event):  # the projector's on-failure queue: the repair path
        return repair_failed_batches(event, store=collaborators()["store"], streams=streams_client())
    return reconcile(event, **collaborators())


def _correlation(event: Any, context: Any) -> dict[str, Any]:
    detail = event.get("detail") if isinstance(event, dict) else None
    return {"run_id": detail.get("name") if isinstance(detail, dict) else None}


# Lambda entry point: Powertools Logger (run_id of a status change), Metrics (RunsEnded of
# every run it settles), Tracer.
entry = LambdaEntry(telemetry.RECONCILER, _handle, correlation=_correlation)
handler = entry.handler


def prime() -> None:
    """The init phase in Lambda: the domain imported, the store and the orchestrator built
    (their clients made, not called), the Powertools objects ready. No I/O."""
    import workflow_runs.ending
    import workflow_runs.models  # noqa: F401

    import workflow_runs_step_runner.runner  # noqa: F401

    _ready_clients()
    entry.instrumented()
    _failure_message("FAILED")


def _ready_clients() -> None:
    from workflow_runs.store import warm_up

    made = collaborators()
    made["orchestrator"].client  # noqa: B018 - made now, not on the first sweep
    warm_up(made["store"])  # answered in-process: nothing is sent


# After a restore whose clients could not renew their credentials: made again, and readied.
entry.init(prime, remake=(collaborators,), ready=_ready_clients)
