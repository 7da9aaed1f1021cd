"""The local orchestrator: `infra/state_machine.asl.json` followed in-process, for `workflow-runs dev`.

It implements the orchestrator port (start / stop / describe) and drives each run the way
the state machine does, calling the real step runner (`run_step`) in a worker thread:

  RunStep ── its reply's `next` ──> step: RunStep again · wait: sleep waitSeconds, RunStep ·
                                    done: SUCCEEDED · failed: FAILED
  RunStep raises StepRetryableError → retried with `attempt` = the retry count (RetryCount
  semantics) after IntervalSeconds·BackoffRate^n, capped, with full jitter
  any other error (or retries exhausted) → Catch → the `action: fail` invocation → FAILED
  approval: the Approval state: a task token is made, the runner parks the step with it
  (`action: approval`), and the execution waits — no thread polls — until
  send_task_success / send_task_failure names that token, or `timeoutSeconds` pass
  (States.Timeout → the `action: approval-timeout` invocation, routed like RunStep's reply)

Two run classes, as the stack's two state machines (docs/orchestration.md):
- standard: stop behaves like StopExecution: the execution is ABORTED at once, a step in
  flight runs to its end (as a Lambda would) and its conditional writes find the run
  cancelled; a wait or a backoff ends immediately. Like the EventBridge rule of the stack,
  an execution that ends FAILED, TIMED_OUT or ABORTED is handed to the reconciler.
- express: there is no StopExecution: a stop only marks (the store's cancel is the truth)
  and the execution ends at its next step, changing nothing (locally that step comes at
  once rather than after the rest of a wait). It lives at most
  `express_max_seconds` (TIMED_OUT after). It sends no status events: an execution that
  ends FAILED or TIMED_OUT is handed to the reconciler as its sweep would find the run
  (EXPRESS_ENDED), at once instead of minutes later. With `express_duplicates`, each
  Express start starts a second execution of the same run beside the first: the
  at-least-once delivery AWS allows, forced.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workflow_runs.retry_rules import RECORD_FAILURE_RETRY, RUN_STEP_RETRIERS, STORE_RETRY
from workflow_runs.states import (
    ACTION_APPROVAL_TIMED_OUT,
    ACTION_PARK_APPROVAL,
    EXPRESS,
    EXPRESS_ENDED,
    EXPRESS_MAX_SECONDS,
    NEXT_APPROVAL,
    NEXT_DONE,
    NEXT_STEP,
    NEXT_WAIT,
    STANDARD,
)

from . import aws_calls

if TYPE_CHECKING:
    from workflow_runs.settings import Settings
    from workflow_runs.store import RunStore
    from workflow_runs_step_runner.runner import Unsealer

logger = logging.getLogger("workflow_runs_dev.orchestrator")

RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED = "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"



Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class TaskNotWaiting(Exception):
    """What Step Functions answers a callback whose task no longer waits (TaskTimedOut,
    TaskDoesNotExist, InvalidToken): the token is unknown, used, timed out or stopped."""


@dataclass
class _Callback:
    """A task waiting on a token: resolved once, by a callback, the timeout or a stop."""

    token: str
    resolved: threading.Event = field(default_factory=threading.Event)
    error: str | None = None  # set by send_task_failure


@dataclass
class _Execution:
    run_id: str
    orchestration: str = STANDARD
    deadline: float = float("inf")  # time.monotonic() after which an Express execution times out
    status: str = RUNNING
    stop_requested: threading.Event = field(default_factory=threading.Event)
    # Ends a wait or a backoff early: set by a stop (with stop_requested) and, for an Express
    # run, by the cancel that cannot stop it (see `stop`).
    wake: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    callback: _Callback | None = None  # the task token it waits on, in the Approval state

    def end(self, status: str) -> str:
        with self.lock:
            if self.status == RUNNING:
                self.status = status
            return self.status

    def abort(self) -> None:
        self.end(ABORTED)
        self.stop_requested.set()
        self.wake.set()
        if self.callback is not None:
            self.callback.resolved.set()

    def sleep(self, seconds: float) -> bool:
        """Wait `seconds` (or less, when woken); True when the execution was stopped."""
        self.wake.wait(seconds)
        return self.stop_requested.is_set()


class LocalOrchestrator:
    def __init__(
        self,
        *,
        settings: Any = None,
        store: Any = None,
        sealer: Any = None,
        invoke: Invoke | None = None,
        retry_interval_scale: float = 1.0,
        max_workers: int = 8,
        on_execution_end: Callable[[str, str], None] | None = None,
        rng: random.Random | None = None,
        express_max_seconds: float = float(EXPRESS_MAX_SECONDS),
        express_duplicates: bool = False,
        registry: Any = None,
    ):
        """`invoke` is the step runner (default: `run_step` with these settings, store and
        sealer); `retry_interval_scale` multiplies every backoff (tests use 0.001);
        `on_execution_end(run_id, status)` is called for FAILED / TIMED_OUT / ABORTED
        (default: the reconciler settles the run, as the stack's EventBridge rule does;
        for an Express run, as the sweep does); `express_duplicates` delivers every Express
        run twice (two concurrent executions)."""
        if settings is not None:
            aws_calls.know(settings)  # the resources its step runner uses, for the IAM recorder
        if invoke is None:
            if settings is None or store is None:
                raise TypeError("LocalOrchestrator needs invoke=…, or settings= and store=")
            invoke = _step_runner(settings, store, sealer, registry)
        if on_execution_end is None and store is not None:
            on_execution_end = functools.partial(_settle, store)
        # Whose AWS calls these are (aws_calls): the step runner's, and the reconciler's.
        self._invoke = aws_calls.as_function("step-runner", invoke)
        self._scale = retry_interval_scale
        self._on_end = aws_calls.as_function("reconciler", on_execution_end) if on_execution_end else None
        self._rng = rng or random.Random()
        self._express_max_seconds = express_max_seconds
        self._express_duplicates = express_duplicates
        self._executions: dict[str, _Execution] = {}
        self._callbacks: dict[str, tuple[_Execution, _Callback]] = {}
        self._duplicates: dict[str, _Execution] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="local-execution")

    # ------------------------------------------------------------------ the port

    def start(self, run_id: str, orchestration: str = STANDARD) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the local orchestrator is shut down")
            if run_id in self._executions:
                return  # the execution name is the run id: a repeated start starts nothing
            execution = self._executions[run_id] = self._new_execution(run_id, orchestration)
            duplicate = None
            if orchestration == EXPRESS and self._express_duplicates:
                duplicate = self._duplicates[run_id] = self._new_execution(run_id, orchestration)
        # Queued behind max_workers, an execution already counts as RUNNING, as in AWS.
        self._pool.submit(self._execute, execution)
        if duplicate is not None:
            self._pool.submit(self._execute, duplicate)

    def _new_execution(self, run_id: str, orchestration: str) -> _Execution:
        if orchestration == EXPRESS:
            return _Execution(run_id, EXPRESS, deadline=time.monotonic() + self._express_max_seconds)
        return _Execution(run_id)

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = STANDARD) -> bool:
        execution = self._executions.get(run_id)
        if execution is None:
            return orchestration == EXPRESS  # nothing to ask in AWS either: the store decides
        if execution.orchestration == EXPRESS:
            # No StopExecution: the run is cancelled in the store, and the execution ends at
            # its next step (its writes are refused; it answers done). Locally that next step
            # comes at once instead of after the rest of a wait: the outcome is the same, and
            # a worker of the bounded pool is not held for nothing.
            logger.info("express execution not stopped; it ends at its next step",
                        extra={"run_id": run_id, "reason": reason})
            for each in (execution, self._duplicates.get(run_id)):
                if each is not None:
                    each.wake.set()
            return True
        execution.abort()
        logger.info("execution stopped", extra={"run_id": run_id, "reason": reason})
        return True

    def describe(self, run_id: str) -> str | None:
        execution = self._executions.get(run_id)
        return execution.status if execution else None

    def send_task_success(self, token: str, output: str) -> None:
        self._resolve(token, None)

    def send_task_failure(self, token: str, error: str, cause: str) -> None:
        self._resolve(token, error or "States.TaskFailed")

    def _resolve(self, token: str, error: str | None) -> None:
        with self._lock:
            found = self._callbacks.pop(token, None)
        if found is None:
            raise TaskNotWaiting("the task is not waiting for this token (timed out, stopped or answered)")
        execution, callback = found
        with execution.lock:
            if callback.resolved.is_set() or execution.status != RUNNING:
                raise TaskNotWaiting("the task is not waiting for this token (timed out, stopped or answered)")
            callback.error = error
            callback.resolved.set()

    def waiting_tokens(self) -> int:
        """How many tasks wait on a token now (tests)."""
        with self._lock:
            return len(self._callbacks)

    # ------------------------------------------------------------------ lifecycle

    def join(self, run_id: str, timeout: float | None = None) -> str | None:
        """Wait until the run's worker has finished (an ABORTED execution's in-flight step
        included); the final status, or None when there is no such execution."""
        execution = self._executions.get(run_id)
        if execution is None:
            return None
        for each in (execution, self._duplicates.get(run_id)):
            if each is not None and not each.finished.wait(timeout):
                raise TimeoutError(f"execution {run_id} still working after {timeout}s")
        return execution.status

    def shutdown(self, wait: bool = True) -> None:
        """Ctrl-C: start nothing more, end waits and backoffs now, let steps in flight finish.
        Runs left open are the reconciler's to settle on a later start, as in AWS."""
        with self._lock:
            self._closed = True
            executions = [*self._executions.values(), *self._duplicates.values()]
        for execution in executions:
            execution.abort()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        if wait:  # every worker has returned; executions still queued were never started
            for execution in executions:
                execution.finished.set()

    # ------------------------------------------------------------------ the state machine

    def _execute(self, execution: _Execution) -> None:
        try:
            status = self._drive(execution)
        except Exception:
            logger.exception("execution crashed", extra={"run_id": execution.run_id})
            status = FAILED
        status = execution.end(status)
        try:
            if status in (FAILED, TIMED_OUT, ABORTED) and self._on_end is not None and not self._closed:
                self._on_end(execution.run_id, status if execution.orchestration == STANDARD else EXPRESS_ENDED)
        except Exception:
            logger.exception("settling the run failed", extra={"run_id": execution.run_id})
        finally:
            execution.finished.set()

    def _drive(self, execution: _Execution) -> str:
        run_id = execution.run_id
        while True:
            if execution.stop_requested.is_set():
                return ABORTED
            if time.monotonic() >= execution.deadline:
                return TIMED_OUT
            # RunStep, with its Retry; RetryCount restarts each time the state is entered and
            # counts the retries of every retrier, while each retrier counts its own attempts.
            retry_count = 0
            retried = dict.fromkeys(RUN_STEP_RETRIERS, 0)
            while True:
                try:
                    reply = self._invoke({"runId": run_id, "attempt": retry_count})
                    break
                except Exception as exc:  # noqa: BLE001 - every error is a Task failure here
                    error_name = type(exc).__name__
                    if execution.stop_requested.is_set():
                        return ABORTED
                    retrier = next((r for r in RUN_STEP_RETRIERS if r.matches(error_name)), None)
                    if retrier is not None and retried[retrier] < retrier.max_attempts:
                        delay = retrier.delay(retried[retrier], self._rng) * self._scale
                        retried[retrier] += 1
                        retry_count += 1
                        if execution.sleep(delay):
                            return ABORTED
                        continue
                    return self._record_failure(execution, exc)
            if execution.stop_requested.is_set():
                return ABORTED  # stopped while the step ran: its reply goes nowhere
            route = reply.get("next")
            if route == NEXT_APPROVAL:
                route = self._approval(execution, int(reply.get("timeoutSeconds") or 1))
                if route is None:
                    return ABORTED
            if route == NEXT_STEP:
                continue
            if route == NEXT_WAIT:
                seconds = max(0, int(reply.get("waitSeconds") or 0))
                if execution.sleep(min(seconds, max(0.0, execution.deadline - time.monotonic()))):
                    return ABORTED
                continue
            return SUCCEEDED if route == NEXT_DONE else FAILED  # NEXT_FAILED and anything else: StepFailed

    def _approval(self, execution: _Execution, timeout_seconds: int) -> str | None:
        """The Approval state: park the step with a new token and wait for its callback.
        Returns the next route (`step` after a success, or the timeout invocation's
        `next`), FAILED after a failure callback or a failed park, None when stopped."""
        run_id = execution.run_id
        callback = _Callback(token=f"local-task-token-{uuid.uuid4()}")
        deadline = time.monotonic() + timeout_seconds
        with self._lock:
            self._callbacks[callback.token] = (execution, callback)
        execution.callback = callback
        try:
            retry_count = 0
            while True:
                try:
                    self._invoke({"action": ACTION_PARK_APPROVAL, "runId": run_id, "attempt": retry_count,
                                  "token": callback.token})
                    break
                except Exception as exc:  # noqa: BLE001 - the Approval state's Retry, then Catch
                    if execution.stop_requested.is_set():
                        return None
                    if STORE_RETRY.matches(type(exc).__name__) and retry_count < STORE_RETRY.max_attempts:
                        retry_count += 1
                        if execution.sleep(STORE_RETRY.delay(retry_count - 1, self._rng) * self._scale):
                            return None
                        continue
                    self._record_failure(execution, exc)
                    return FAILED
            # No polling: the callback, a stop or the timeout ends this wait.
            answered = callback.resolved.wait(max(0.0, deadline - time.monotonic()))
            if execution.stop_requested.is_set():
                return None
            if answered and callback.error is None:
                return NEXT_STEP
            if answered:
                self._record_failure(execution, _TaskFailed(callback.error or "States.TaskFailed"))
                return FAILED
        finally:
            with self._lock:
                self._callbacks.pop(callback.token, None)
            execution.callback = None
        # States.Timeout → ApprovalTimedOut (its reply is routed like RunStep's).
        try:
            reply = self._invoke({"action": ACTION_APPROVAL_TIMED_OUT, "runId": run_id})
        except Exception as exc:  # noqa: BLE001 - its Catch: RecordFailure
            self._record_failure(execution, exc)
            return FAILED
        route = reply.get("next")
        return NEXT_STEP if route == NEXT_STEP else (NEXT_DONE if route == NEXT_DONE else FAILED)

    def _record_failure(self, execution: _Execution, exc: Exception) -> str:
        """The Catch: States.ALL → RecordFailure (with its own Retry) → the Fail state."""
        error_name = exc.error if isinstance(exc, _TaskFailed) else type(exc).__name__
        cause = {"Error": error_name, "Cause": json.dumps({"errorType": error_name, "errorMessage": str(exc)})}
        event = {"action": "fail", "runId": execution.run_id, "cause": cause}
        for retry_count in range(RECORD_FAILURE_RETRY.max_attempts + 1):
            try:
                self._invoke(event)
                break
            except Exception:
                logger.exception("RecordFailure failed", extra={"run_id": execution.run_id})
                if retry_count == RECORD_FAILURE_RETRY.max_attempts:
                    break
                if execution.sleep(RECORD_FAILURE_RETRY.delay(retry_count, self._rng) * self._scale):
                    return ABORTED
        return FAILED


class _TaskFailed(Exception):
    """A failure callback, named as its `error` (what a Catch would match)."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


def _step_runner(settings: Settings, store: RunStore, sealer: Unsealer | None, registry: Any = None) -> Invoke:
    from workflow_runs_step_runner.handler import LazySealer
    from workflow_runs_step_runner.runner import run_step

    return functools.partial(run_step, settings=settings, store=store, sealer=sealer or LazySealer(settings),
                             registry=registry)


def _settle(store: Any, run_id: str, status: str) -> None:
    from workflow_runs_step_runner.reconciler import settle

    settle(store, run_id, status)
