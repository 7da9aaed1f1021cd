"""One invocation of the step runner: advance one run by one step.

The state machine only carries `{runId}`; everything else (the workflow's steps, which of
them completed, the attempt history) is read from the run's partition in ONE Query, so an
invocation can always tell from the store where the run stands. Every write is conditional:
status writes on the old status, activity writes on the run not being terminal. That is
what makes a late step after a cancel (StopExecution does not stop a running Lambda), a
repeated invocation, or a race with the reconciler harmless.

Events (from infra/state_machine.asl.json or the local orchestrator):
  {"runId": …, "attempt": <$$.State.RetryCount, 0-based>}         run the next step
  {"action": "fail", "runId": …, "cause": {"Error": …, "Cause": …}}  the Catch path
  {"action": "approval", "runId": …, "attempt": …, "token": …}      park an approval step
  {"action": "approval-timeout", "runId": …}                       its timeout fired
Reply: {"runId", "next": "step" | "wait" | "approval" | "done" | "failed", "waitSeconds"}
(and "timeoutSeconds" with "approval": the Approval state's TimeoutSecondsPath).

Approval steps (docs/steps.md): RunStep does not run them; it answers `approval`, and the
Approval state (`lambda:invoke.waitForTaskToken`) invokes the runner with the task token:
the step renders its prompt and the activity run and the run go `waiting` with the sealed
token in one transaction. The invocation returns at once; the execution waits, at no cost,
until the API sends the token back (workflow_runs.approvals) or the timeout fires.

DynamoDB writes per step (besides thinking): the activity as `running`, its end
(`completed` / `failed` / `waiting`), and at most one run status change (→ running on the
first step, → completed on the last, → failed, → waiting).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from workflow_runs import telemetry
from workflow_runs.ending import end_from_outside, retry_lost_races
from workflow_runs.errors import NotFound, TransitionRejected, Unavailable
from workflow_runs.models import (
    MAX_ATTEMPTS_CEILING,
    ActivityRun,
    RunError,
    Status,
    Step,
    approval_timeout_seconds,
    parse_timestamp,
    utc_now,
)
from workflow_runs.secrets import StreamMasker
from workflow_runs.settings import Settings
from workflow_runs.states import (
    ACTION_APPROVAL_TIMED_OUT,
    ACTION_FAIL,
    ACTION_PARK_APPROVAL,
    APPROVAL_STEP,
    NEXT_APPROVAL,
    NEXT_DONE,
    NEXT_FAILED,
    NEXT_STEP,
    NEXT_WAIT,
)
from workflow_runs.store import RunRecord
from workflow_runs.store.ports import StepStore

from workflow_runs_step_runner.outputs import outputs_too_large
from workflow_runs_step_runner.steps.base import StepContext, StepError
from workflow_runs_step_runner.thinking import ThinkingWriter

MAX_ERROR_CHARS = 2000
# The Wait state ends at least `seconds` after the runner wrote `waiting`; a resume that
# comes earlier than that (minus clock skew) is a repeated invocation, not the end of the wait.
WAIT_CLOCK_TOLERANCE_SECONDS = 1.0


class StepRetryableError(Exception):
    """A step failed retryably and has attempts left.

    Its class name is the contract: Lambda reports it as the error type, which becomes the
    Task state's Error, which the ASL's Retry matches (`ErrorEquals: ["StepRetryableError"]`).
    """


class ApprovalNotParked(Exception):
    """The Approval state's invocation could not park the step (it failed, or the run ended):
    the task must not wait for a token nobody will send. Its class name reaches the ASL's
    Catch, whose RecordFailure fails the run unless it ended already."""


class Unsealer(Protocol):
    """Opens a run's sealed envs (workflow_runs.secrets; built lazily by the handler)."""

    def unseal(self, blob: str, run_id: str) -> dict[str, str]: ...


class Registry(Protocol):
    def get(self, type_name: str) -> Any: ...


def run_step(
    event: dict[str, Any],
    *,
    settings: Settings,
    store: StepStore,
    sealer: Unsealer,
    registry: Registry | None = None,
    logger: Any = None,
) -> dict[str, Any]:
    """Handle one state machine event. Collaborators are injected (the Lambda handler
    builds them from cached factories; tests pass DynamoDB Local stores)."""
    if registry is None:
        from workflow_runs_step_runner.steps import registry as default_registry

        registry = default_registry
    if logger is None:
        from workflow_runs_step_runner._log import get_logger

        logger = get_logger()
    invocation = _Invocation(settings=settings, store=store, sealer=sealer, registry=registry, logger=logger)
    run_id = event["runId"]
    action = event.get("action")
    if action == ACTION_FAIL:
        return invocation.record_failure(run_id, event.get("cause") or {})
    if action == ACTION_PARK_APPROVAL:
        return invocation.park_approval(run_id, str(event.get("token") or ""), int(event.get("attempt") or 0))
    if action == ACTION_APPROVAL_TIMED_OUT:
        return invocation.approval_timed_out(run_id)
    return invocation.advance(run_id, int(event.get("attempt") or 0))


def activity_run_id(run_id: str, step_index: int, attempt: int) -> str:
    """Deterministic, so a repeated delivery of an invocation finds the attempt it opened."""
    try:
        namespace = uuid.UUID(run_id)
    except ValueError:
        namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"workflow-run:{run_id}")
    return str(uuid.uuid5(namespace, f"{step_index}:{attempt}"))


def _reply(run_id: str, next_: str, wait_seconds: int = 0) -> dict[str, Any]:
    return {"runId": run_id, "next": next_, "waitSeconds": int(wait_seconds)}


def _approval_reply(run_id: str, timeout_seconds: int) -> dict[str, Any]:
    # TimeoutSecondsPath needs a positive integer.
    return {**_reply(run_id, NEXT_APPROVAL), "timeoutSeconds": max(1, int(timeout_seconds))}


class _Invocation:
    def __init__(self, *, settings: Settings, store: StepStore, sealer: Unsealer, registry: Registry, logger: Any):
        self.settings = settings
        self.store = store
        self.sealer = sealer
        self.registry = registry
        self.log = logger
        self._env: dict[str, str] = {}
        self.secrets: list[str] = []
        # The task token of the Approval state's invocation (None when running a step).
        self._token: str | None = None

    # ------------------------------------------------------------------ normal path

    def advance(self, run_id: str, retry_count: int) -> dict[str, Any]:
        # A lost race (TransitionRejected) means another writer moved the run (a cancel,
        # the reconciler, a repeated invocation): read again and act on what is stored now.
        # A busy table is not a lost race: the store raises Unavailable, the state machine
        # retries the invocation.
        def attempt() -> dict[str, Any]:
            record = self._load(run_id)
            if record is None or record.status.terminal:
                self.log.info("run is terminal; nothing to do", extra={"run_id": run_id,
                              "status": record.status.value if record else None})
                return _reply(run_id, NEXT_DONE)
            return self._advance(record, retry_count)

        return retry_lost_races(attempt)

    def _advance(self, record: RunRecord, retry_count: int) -> dict[str, Any]:
        if record.run.retry_of and record.status is Status.SCHEDULED and not record.run.activity_runs:
            record = self._inherit_completed_steps(record)
        self._unseal(record)
        index_of = {s.id: i for i, s in enumerate(record.steps)}
        waiting = next((a for a in record.run.activity_runs if a.status is Status.WAITING), None)
        if waiting is not None:
            step = record.steps[index_of[waiting.step_id]]
            if step.type == APPROVAL_STEP:
                # Still waiting for a decision (the execution came back without one, which
                # only a lost task could do): park it again with a fresh token.
                return _approval_reply(record.id, math.ceil(_remaining_approval(step, waiting)))
            record, early = self._resume_after_wait(record, waiting, index_of[waiting.step_id])
            if early is not None:
                return early
        index = _next_step_index(record)
        if index is None:
            return self._complete(record)
        if record.steps[index].type == APPROVAL_STEP:
            # Run by the Approval state, which carries the task token the step waits on.
            return _approval_reply(record.id, approval_timeout_seconds(record.steps[index]))
        return self._run(record, index, attempt=retry_count + 1)

    def _inherit_completed_steps(self, record: RunRecord) -> RunRecord:
        """A retry whose copied steps are not there yet (the API's copy met a busy table, or
        the run reused nothing): copy them now, before the first step, with the same
        conditional write the API uses, so it starts at the failed step either way."""
        from workflow_runs.retries import plan_retry  # only retries need it

        source = self.store.get_run_record(record.run.retry_of or "", record.tenant)
        plan = plan_retry(source, record.id)
        if plan.reused and self.store.copy_reused(record.id, plan.reused):
            self.log.info("retry inherited its completed steps",
                          extra={"run_id": record.id, "retry_of": source.id, "reused": len(plan.reused)})
        return self.store.get_run_record(record.id) if plan.reused else record

    def _resume_after_wait(self, record: RunRecord, waiting: ActivityRun, index: int):
        remaining = _remaining_wait(record.steps[index], waiting)
        if remaining > WAIT_CLOCK_TOLERANCE_SECONDS:
            # A repeated invocation of the wait step itself (e.g. a Lambda service retry):
            # keep waiting for what is left instead of cutting the wait short.
            return record, _reply(record.id, NEXT_WAIT, math.ceil(remaining))
        closed = waiting.model_copy(update={"status": Status.COMPLETED, "updated_at": utc_now()})
        if not self.store.finish_activity(record.id, index, closed, expected=[Status.WAITING]):
            raise TransitionRejected(f"the wait of run {record.id} was closed meanwhile")
        self.log.info("wait ended", extra={"run_id": record.id, "step_id": waiting.step_id})
        activities = [closed if a.id == waiting.id else a for a in record.run.activity_runs]
        return record.with_activities(activities), None

    def _run(self, record: RunRecord, index: int, attempt: int) -> dict[str, Any]:
        run_id, step = record.id, record.steps[index]
        self._close_interrupted_attempts(record, index, attempt)
        now = utc_now()
        activity = ActivityRun(
            id=activity_run_id(run_id, index, attempt), step_id=step.id, step_name=step.name,
            status=Status.RUNNING, attempt=attempt, created_at=now, updated_at=now,
        )
        if record.status is Status.RUNNING:
            # The last step opens in one transaction: with its end and the run's, 3 writes.
            if not self.store.put_activity(run_id, index, activity, one_request=index == len(record.steps) - 1):
                # The run ended (cancelled) before the step began, or this is a second
                # delivery of an invocation that opened the attempt already (Express runs at
                # least once): the first delivery runs the step and drives the run on; this
                # one ends its execution without touching anything.
                self.log.info("step not opened: the run ended or the attempt is open already",
                              extra={"run_id": run_id, "step_id": step.id, "attempt": attempt})
                return _reply(run_id, NEXT_DONE)
        else:
            # The run's move to running and the step's start are one transaction (one write);
            # a TransitionRejected is a lost race: advance() reads again.
            record = self.store.transition_run(record, Status.RUNNING, activities=[(index, activity, None)])
        log_keys = {"run_id": run_id, "step_id": step.id, "step_type": step.type, "attempt": attempt}
        telemetry.correlate(tenant=record.tenant, step_id=step.id)
        self.log.info("step started", extra=log_keys)
        context, flush_thinking = self._context(record, step, activity)
        elapsed = telemetry.started_clock()
        try:
            try:
                outcome = self.registry.get(step.type).run(context)
            finally:
                telemetry.step_duration(step.type, elapsed())
                flush_thinking()  # before the step's end is written, so readers see it first
        except StepError as exc:
            if exc.busy:
                return self._step_met_busy_service(record, index, activity, self._mask(exc.message), log_keys)
            return self._step_failed(record, index, activity, self._mask(exc.message), exc.retryable)
        except Unavailable:
            # The store stayed busy under the step (its thinking, its outputs): no fault of
            # the step's. The state machine makes the invocation again, and the next one
            # closes this attempt as interrupted: the run never fails for a busy table.
            self.log.warning("the store was busy under the step; the state machine tries again", extra=log_keys)
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in a step type must still end the step cleanly
            self.log.error("step raised unexpectedly", extra={**log_keys, "error_type": type(exc).__name__,
                                                              "error": self._mask(str(exc))[:MAX_ERROR_CHARS]})
            message = f"step {step.id} failed unexpectedly ({type(exc).__name__})"
            return self._step_failed(record, index, activity, message, retryable=False)

        outputs = self._mask(dict(outcome.outputs or {}))
        if (too_large := outputs_too_large(outputs)) is not None:
            return self._step_failed(record, index, activity, too_large, retryable=False)
        if outcome.approval_timeout_seconds is not None:
            return self._park(record, index, activity, outputs, outcome.approval_timeout_seconds, log_keys)
        if outcome.wait_seconds:
            parked = activity.model_copy(update={"status": Status.WAITING, "outputs": outputs, "updated_at": utc_now()})
            try:
                self.store.transition_run(record, Status.WAITING, activities=[(index, parked, [Status.RUNNING])])
            except TransitionRejected:
                return self._after_rejected_finish(run_id)  # only a terminal move beats running → waiting
            self.log.info("step waiting", extra={**log_keys, "wait_seconds": outcome.wait_seconds})
            return _reply(run_id, NEXT_WAIT, outcome.wait_seconds)

        done = activity.model_copy(update={"status": Status.COMPLETED, "outputs": outputs, "updated_at": utc_now()})
        if not self.store.finish_activity(run_id, index, done, expected=[Status.RUNNING]):
            return self._after_rejected_finish(run_id)
        self.log.info("step completed", extra=log_keys)
        if index == len(record.steps) - 1:
            # A write of its own after the step's: the run's end must reach the stream (and so
            # every SSE reader) after the step's, which one transaction would not promise.
            try:
                self.store.transition_run(record, Status.COMPLETED)
                self.log.info("run completed", extra={"run_id": run_id})
            except TransitionRejected:
                # Only a real rejection lands here (a conflict is retried, a busy table raises
                # Unavailable for the state machine to retry): the run was cancelled or
                # failed meanwhile, and that status stands.
                self.log.info("run ended otherwise before it completed", extra={"run_id": run_id})
            return _reply(run_id, NEXT_DONE)
        return _reply(run_id, NEXT_STEP)

    # ------------------------------------------------------------------ approvals

    def park_approval(self, run_id: str, token: str, retry_count: int) -> dict[str, Any]:
        """The Approval state's invocation: run the approval step with this task token (or,
        when it waits already, give it this new token). Raises ApprovalNotParked when the
        step cannot wait (it failed, or the run ended): the task must end, not wait."""
        if not token:
            raise ApprovalNotParked("the Approval state sent no task token")
        self._token = token

        def attempt() -> dict[str, Any]:
            record = self._load(run_id)
            if record is None or record.status.terminal:
                raise ApprovalNotParked("the run ended before its approval step was reached")
            self._unseal(record)
            index_of = {s.id: i for i, s in enumerate(record.steps)}
            waiting = next((a for a in record.run.activity_runs if a.status is Status.WAITING
                            and record.steps[index_of[a.step_id]].type == APPROVAL_STEP), None)
            if waiting is not None:
                index = index_of[waiting.step_id]
                step = record.steps[index]
                sealed = self._seal_token(run_id, step.id, token)
                if not self.store.replace_approval_token(record, index, waiting, sealed, approval_timeout_seconds(step)):
                    raise TransitionRejected("the approval was decided or closed meanwhile")
                self.log.info("approval waits with a new task token", extra={"run_id": run_id, "step_id": step.id})
                return _approval_reply(run_id, approval_timeout_seconds(step))
            next_index = _next_step_index(record)
            if next_index is None or record.steps[next_index].type != APPROVAL_STEP:
                raise ApprovalNotParked("the run's next step is not an approval step")
            reply = self._run(record, next_index, attempt=retry_count + 1)
            if reply["next"] == NEXT_STEP:
                raise TransitionRejected("another writer moved the step; read again")
            if reply["next"] != NEXT_APPROVAL:
                raise ApprovalNotParked(f"the approval step {record.steps[next_index].id} did not wait ({reply['next']})")
            return reply

        return retry_lost_races(attempt)

    def _park(self, record: RunRecord, index: int, activity: ActivityRun, outputs: dict[str, Any],
              timeout_seconds: int, log_keys: dict[str, Any]) -> dict[str, Any]:
        if self._token is None:
            # An approval step only runs from the Approval state (RunStep answers `approval`).
            return self._step_failed(record, index, activity, "an approval step ran without a task token", False)
        run_id, step = record.id, record.steps[index]
        parked = activity.model_copy(update={"status": Status.WAITING, "outputs": outputs, "updated_at": utc_now()})
        sealed = self._seal_token(run_id, step.id, self._token)
        try:
            self.store.park_approval(record, index, parked, sealed, timeout_seconds)
        except TransitionRejected:
            return self._after_rejected_finish(run_id)
        self.log.info("step waiting for a decision", extra={**log_keys, "timeout_seconds": timeout_seconds})
        return _approval_reply(run_id, timeout_seconds)

    def _seal_token(self, run_id: str, step_id: str, token: str) -> str:
        from workflow_runs.approvals import seal_token
        from workflow_runs.secrets import get_sealer

        return seal_token(get_sealer(self.settings), run_id, step_id, token)

    def approval_timed_out(self, run_id: str) -> dict[str, Any]:
        """The Approval state's timeout fired (States.Timeout). The store decides: an
        undecided approval fails with "approval timed out" (conditionally: a decision that
        lands first wins); a decision stored before it whose callback was lost is applied
        now — approved goes on, rejected fails the run."""
        from workflow_runs.approvals import TIMED_OUT_MESSAGE
        from workflow_runs.store.approvals import REJECTED, TIMED_OUT

        def attempt() -> dict[str, Any]:
            record = self._load(run_id)
            if record is None:
                return _reply(run_id, NEXT_DONE)
            if record.status.terminal:
                return _reply(run_id, NEXT_FAILED if record.status is Status.FAILED else NEXT_DONE)
            index, activity = in_flight(record)
            if index is None or record.steps[index].type != APPROVAL_STEP:
                return _reply(run_id, NEXT_STEP)  # the approval was decided and the run went on
            step = record.steps[index]
            approval = self.store.get_approval(run_id, index)
            decision = (approval or {}).get("decision")
            if activity is not None and activity.status is Status.WAITING and decision is None:
                error = RunError(message=TIMED_OUT_MESSAGE, step_id=step.id)
                self.store.decide_approval(record, index, activity, TIMED_OUT, {"error": TIMED_OUT_MESSAGE}, error=error)
                self.log.warning("approval timed out; the run fails", extra={"run_id": run_id, "step_id": step.id})
                return _reply(run_id, NEXT_FAILED)
            if decision in (REJECTED, TIMED_OUT):
                # Decided, its step closed, but the run's end was never written (a crash between).
                closed = next((a for a in reversed(record.run.activity_runs) if a.step_id == step.id), None)
                message = str(((closed.outputs if closed else None) or {}).get("error") or TIMED_OUT_MESSAGE)
                self.store.fail_after_decision(record, RunError(message=message, step_id=step.id))
                return _reply(run_id, NEXT_FAILED)
            # Not parked yet (the invocation never wrote it): enter the Approval state again.
            return _reply(run_id, NEXT_STEP)

        return retry_lost_races(attempt)

    def _close_interrupted_attempts(self, record: RunRecord, index: int, attempt: int) -> None:
        """An earlier invocation that died after opening its attempt (a Lambda service error
        the state machine retried) left it `running`: close it as failed, conditionally.
        Only earlier attempts: a later one belongs to a live execution (a late duplicate
        delivery of this attempt must not close it)."""
        step_id = record.steps[index].id
        for earlier in record.run.activity_runs:
            if earlier.step_id == step_id and earlier.attempt < attempt and earlier.status is Status.RUNNING:
                interrupted = earlier.model_copy(update={
                    "status": Status.FAILED, "updated_at": utc_now(),
                    "outputs": {"error": f"the invocation was interrupted; retried as attempt {attempt}"}})
                self.store.finish_activity(record.id, index, interrupted, expected=[Status.RUNNING])

    def _step_met_busy_service(self, record: RunRecord, index: int, activity: ActivityRun, message: str,
                               log_keys: dict[str, Any]) -> dict[str, Any]:
        """The attempt fails with the service's answer, and the state machine's `Unavailable`
        retrier makes the invocation again (the next attempt), as for a busy table."""
        failed = activity.model_copy(update={"status": Status.FAILED, "outputs": {"error": message[:MAX_ERROR_CHARS]},
                                             "updated_at": utc_now()})
        if not self.store.finish_activity(record.id, index, failed, expected=[Status.RUNNING]):
            return self._after_rejected_finish(record.id)
        self.log.warning("a service the step called was busy; the state machine tries again",
                         extra={**log_keys, "error": message[:MAX_ERROR_CHARS]})
        raise Unavailable(message[:MAX_ERROR_CHARS])

    def _step_failed(
        self, record: RunRecord, index: int, activity: ActivityRun, message: str, retryable: bool
    ) -> dict[str, Any]:
        run_id, step = record.id, record.steps[index]
        message = message[:MAX_ERROR_CHARS]
        failed = activity.model_copy(
            update={"status": Status.FAILED, "outputs": {"error": message}, "updated_at": utc_now()}
        )
        max_attempts = min(step.retry.max_attempts, MAX_ATTEMPTS_CEILING)
        log_keys = {"run_id": run_id, "step_id": step.id, "attempt": activity.attempt, "max_attempts": max_attempts}
        if not self.store.finish_activity(run_id, index, failed, expected=[Status.RUNNING]):
            return self._after_rejected_finish(run_id)
        if retryable and activity.attempt < max_attempts:
            self.log.warning("step failed; the state machine retries it", extra={**log_keys, "error": message})
            raise StepRetryableError(message)
        # The run's end is a write after the step's, so the stream carries them in that order.
        self.log.warning("step failed; the run fails", extra={**log_keys, "error": message})
        try:
            self.store.transition_run(record, Status.FAILED, error=RunError(message=message, step_id=step.id))
        except TransitionRejected:
            return _reply(run_id, NEXT_DONE)  # it ended otherwise meanwhile (cancelled)
        return _reply(run_id, NEXT_FAILED)

    def _after_rejected_finish(self, run_id: str) -> dict[str, Any]:
        """An activity write was refused: the run ended meanwhile (the usual case: a cancel
        while the step ran) — or, rarely, another invocation moved the activity on."""
        status = self.store.run_status(run_id)
        if status is None or status.terminal:
            self.log.info("run ended while its step ran; result discarded",
                          extra={"run_id": run_id, "status": status.value if status else None})
            return _reply(run_id, NEXT_DONE)
        return _reply(run_id, NEXT_STEP)  # let the next invocation decide from the store

    def _complete(self, record: RunRecord) -> dict[str, Any]:
        # Every step completed but the run did not move yet (e.g. the run ended on a wait
        # step, or an earlier invocation stopped between two writes).
        if record.status is not Status.COMPLETED:
            self.store.transition_run(record, Status.COMPLETED)  # TransitionRejected: read again
        return _reply(record.id, NEXT_DONE)

    def _context(self, record: RunRecord, step: Step, activity: ActivityRun) -> tuple[StepContext, Callable[[], None]]:
        """The step's context, and what writes the thinking text held back at the step's end."""
        earlier = {
            a.step_id: {"outputs": a.outputs or {}}
            for a in record.run.activity_runs
            if a.status is Status.COMPLETED
        }
        # A secret may arrive split over chunks: mask across them, not chunk by chunk; then
        # coalesce into at most one write per window (workflow_runs_step_runner.thinking).
        masker = StreamMasker(self.secrets)
        writer = ThinkingWriter(lambda seq, text: self.store.put_thinking(record.id, activity.id, step.id, seq, text))

        def emit_thinking(text: str) -> None:
            if text:
                writer.emit(masker.feed(text))

        def flush_thinking() -> None:
            writer.emit(masker.flush())
            writer.flush()

        return StepContext(
            run_id=record.id,
            activity_run_id=activity.id,
            step=step,
            attempt=activity.attempt,
            inputs={i.name: i.value for i in record.run.inputs},
            steps=earlier,
            env=dict(self._env),
            settings=self.settings,
            emit_thinking=emit_thinking,
        ), flush_thinking

    # ------------------------------------------------------------------ Catch path

    def record_failure(self, run_id: str, cause: dict[str, Any]) -> dict[str, Any]:
        """The state machine caught an error it will not retry: the run fails with the step in
        flight (closed with the same message), unless it already ended (then this changes nothing)."""

        def error_of(record: RunRecord) -> RunError:
            try:
                self._unseal(record)
            except Exception:  # noqa: BLE001 - the run must fail even when its envs cannot be read
                self.secrets = []
            index, _ = in_flight(record)
            message = self._mask(_describe_cause(cause))[:MAX_ERROR_CHARS]
            return RunError(message=message, step_id=record.steps[index].id if index is not None else None)

        ending = end_from_outside(self.store, run_id, Status.FAILED, error=error_of)
        if ending.changed and ending.record is not None:
            error = ending.record.run.error
            self.log.warning("run failed by the state machine's Catch", extra={
                "run_id": run_id, "step_id": error.step_id if error else None, "error": error.message if error else None})
        return _reply(run_id, NEXT_FAILED)

    # ------------------------------------------------------------------ helpers

    def _load(self, run_id: str) -> RunRecord | None:
        try:
            return self.store.get_run_record(run_id)
        except NotFound:
            self.log.warning("run not found", extra={"run_id": run_id})
            return None

    def _unseal(self, record: RunRecord) -> None:
        self._env = {}
        if record.sealed_envs:
            # An envs blob that cannot be opened is not retryable and must fail the run:
            # raising here reaches the Catch, whose RecordFailure does exactly that.
            # A retry keeps the failed run's blob, bound to that run's id (`sealed_for`).
            self._env = dict(self.sealer.unseal(record.sealed_envs, record.sealed_for or record.id))
        self.secrets = [v for v in self._env.values() if isinstance(v, str) and v]

    def _mask(self, value: Any) -> Any:
        if not self.secrets:
            return value
        from workflow_runs.secrets import mask

        return mask(value, self.secrets)


def _next_step_index(record: RunRecord) -> int | None:
    completed = {a.step_id for a in record.run.activity_runs if a.status is Status.COMPLETED}
    return next((i for i, s in enumerate(record.steps) if s.id not in completed), None)


def in_flight(record: RunRecord) -> tuple[int | None, ActivityRun | None]:
    """The step the run was at: its open activity run if any, else the first step not completed."""
    index_of = {s.id: i for i, s in enumerate(record.steps)}
    open_runs = [a for a in record.run.activity_runs if a.status in (Status.RUNNING, Status.WAITING)]
    if open_runs:
        latest = max(open_runs, key=lambda a: (index_of.get(a.step_id, -1), a.attempt))
        return index_of.get(latest.step_id), latest
    return _next_step_index(record), None


def _remaining_approval(step: Step, waiting: ActivityRun) -> float:
    since = parse_timestamp(waiting.updated_at)
    return approval_timeout_seconds(step) - (datetime.now(UTC) - since).total_seconds()


def _remaining_wait(step: Step, waiting: ActivityRun) -> float:
    seconds = step.config.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        seconds = (waiting.outputs or {}).get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return 0.0
    since = parse_timestamp(waiting.updated_at)
    return seconds - (datetime.now(UTC) - since).total_seconds()


def _describe_cause(cause: dict[str, Any]) -> str:
    """A readable message from a Catch's {Error, Cause}; Lambda errors carry a JSON Cause."""
    error = str(cause.get("Error") or "States.Runtime")
    raw = cause.get("Cause")
    detail = ""
    if isinstance(raw, str) and raw:
        try:
            parsed = json.loads(raw)
            detail = str(parsed.get("errorMessage") or "") if isinstance(parsed, dict) else raw
        except ValueError:
            detail = raw
    elif isinstance(raw, dict):
        detail = str(raw.get("errorMessage") or "")
    if error == StepRetryableError.__name__:
        return detail or "the step failed after its last attempt"
    if error == "States.Timeout" or error.endswith("Timedout"):
        return "the step timed out"
    return f"the step runner failed ({error})" + (f": {detail}" if detail else "")
