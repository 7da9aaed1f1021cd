"""Powertools Logger, Metrics and Tracer for every Python function, and the Lambda init
phase (SnapStart) they share.

Nothing here does anything at import. The entry modules call `lambda_init(...)` at module
level, and it works only where Lambda's runtime runs them (`in_lambda()`): locally, in the
dev server and in tests an entry module imports as cheaply as before.

Names (agreed, do not rename): namespace `WorkflowRuns`; every metric carries `service`
(one of SERVICES, POWERTOOLS_SERVICE_NAME); RunsStarted{RunClass}, RunsEnded{Status,RunClass},
StepDuration{StepType} (ms), ProjectionLag (ms). Log correlation keys: request_id, run_id,
tenant, step_id.

Metrics are recorded only inside an instrumented invocation (`instrument`): the domain code
that emits them (service, runner, reconciler) also runs in the dev server, on threads,
where there is no invocation to flush them with. Each call to `run_started`, … is then a
no-op. Inside one, the function's Powertools `Metrics` collects them and `log_metrics`
flushes them at the invocation's end as CloudWatch EMF on stdout. One EMF document carries
one dimension set, so a metric whose extra dimensions differ from the pending ones flushes
those first (a step runner invocation that ends a run emits StepDuration{StepType} and
RunsEnded{Status,RunClass}: two documents, each aggregated under its own dimensions).
"""

from __future__ import annotations

import io
import logging
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache, wraps
from typing import Any

NAMESPACE = "WorkflowRuns"
API, STEP_RUNNER, PROJECTOR, RECONCILER, STREAM = "api", "step-runner", "projector", "reconciler", "stream"
SERVICES = (API, STEP_RUNNER, PROJECTOR, RECONCILER, STREAM)

RUNS_STARTED, RUNS_ENDED, STEP_DURATION, PROJECTION_LAG = "RunsStarted", "RunsEnded", "StepDuration", "ProjectionLag"
CORRELATION_KEYS = ("request_id", "run_id", "tenant", "step_id")
# Our modules log through stdlib loggers under these names; in Lambda they are routed to
# the function's Powertools handler, so their records are JSON with the correlation keys.
OUR_LOGGERS = ("workflow_runs", "workflow_runs_dev")

Handler = Callable[[Any, Any], Any]


def in_lambda() -> bool:
    """True only inside Lambda's runtime: both are set by the Lambda service itself, never
    by our tests or the dev server (the benchmarks set them on purpose to simulate init)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and bool(os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"))


# ------------------------------------------------------------------ Powertools objects


@cache
def get_logger(service: str) -> Any:
    from aws_lambda_powertools import Logger

    return Logger(service=service)


@cache
def get_metrics(service: str) -> Any:
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=NAMESPACE, service=service)


def tracing_enabled() -> bool:
    """Powertools' own rule: tracing is off outside Lambda's runtime (no LAMBDA_TASK_ROOT)
    and wherever POWERTOOLS_TRACE_DISABLED is true (tests, the benchmarks)."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "true", "yes", "on", "y")
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not disabled


@cache
def get_tracer(service: str) -> Any:
    from aws_lambda_powertools import Tracer

    return Tracer(service=service)


# ------------------------------------------------------------------ one invocation


@dataclass
class _Invocation:
    service: str
    metrics: Any
    logger: Any
    dimensions: dict[str, str] | None = None  # the extra dimensions of the pending metrics
    keys: dict[str, Any] = field(default_factory=dict)


_current: ContextVar[_Invocation | None] = ContextVar("workflow_runs_invocation", default=None)


def instrument(service: str, handler: Handler, *,
               correlation: Callable[[Any, Any], dict[str, Any]] | None = None, traced: bool = True) -> Handler:
    """`handler` with the function's Logger (Lambda context, correlation keys, state cleared
    per invocation), Tracer (`capture_lambda_handler`, responses not captured: they carry
    run outputs) and Metrics (`log_metrics`: flushed at the end of every invocation).
    `correlation(event, context)` gives the keys known from the event alone. `traced=False`:
    without the Tracer whatever the environment (a rehearsal at init, where there is no
    trace to join)."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    logger, metrics = get_logger(service), get_metrics(service)
    if in_lambda():
        # Only there: elsewhere (tests, a harness) these loggers keep their own configuration.
        route_our_loggers(logger)
    # An invocation that emitted nothing (a GET, an empty batch) is normal, not a warning.
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    def correlated(event: Any, context: Any) -> Any:
        keys = {"request_id": getattr(context, "aws_request_id", None)}
        if correlation is not None:
            keys.update({k: v for k, v in correlation(event, context).items() if v is not None})
        invocation = _Invocation(service, metrics, logger)
        token = _current.set(invocation)
        try:
            correlate(**keys)
            return handler(event, context)
        finally:
            _current.reset(token)

    # A disabled Tracer still builds X-Ray dummy segments on every call: not wrapped at all
    # where it could not send anything.
    inner = (get_tracer(service).capture_lambda_handler(correlated, capture_response=False)
             if traced and tracing_enabled() else correlated)
    flushed = metrics.log_metrics(inner)
    injected = logger.inject_lambda_context(flushed, clear_state=True)

    @wraps(handler)
    def instrumented(event: Any, context: Any = None) -> Any:
        # Lambda always passes a context; a direct call (a test, a harness) may not.
        return injected(event, context if context is not None else _NoContext())

    return instrumented


class _NoContext:
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
    function_version = "$LATEST"
    memory_limit_in_mb = 0
    invoked_function_arn = ""
    aws_request_id = ""
    log_group_name = ""
    log_stream_name = ""

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 0


def correlate(**keys: Any) -> None:
    """Add correlation keys (request_id, run_id, tenant, step_id) to the current
    invocation's logs. Outside an instrumented invocation: nothing (the dev server runs
    several runs on threads of one process, and keys appended there would be shared)."""
    invocation = _current.get()
    if invocation is None:
        return
    unknown = set(keys) - set(CORRELATION_KEYS)
    if unknown:
        raise ValueError(f"not a correlation key: {sorted(unknown)}")
    fresh = {k: v for k, v in keys.items() if v is not None and invocation.keys.get(k) != v}
    if fresh:
        invocation.keys.update(fresh)
        invocation.logger.append_keys(**fresh)


def route_our_loggers(logger: Any) -> None:
    """Our stdlib loggers write through the function's Powertools handler (JSON, with the
    correlation keys), and not also through the root logger (Lambda's runtime has a handler
    there: every record would be written twice)."""
    handler = logger.registered_handler
    for name in OUR_LOGGERS:
        ours = logging.getLogger(name)
        if handler not in ours.handlers:
            ours.handlers = [handler]
        ours.setLevel(logger.log_level)
        ours.propagate = False


# ------------------------------------------------------------------ the agreed metrics


def run_started(run_class: str) -> None:
    _emit(RUNS_STARTED, "Count", 1, {"RunClass": run_class})


def run_ended(status: str, run_class: str) -> None:
    _emit(RUNS_ENDED, "Count", 1, {"Status": status, "RunClass": run_class})


def step_duration(step_type: str, milliseconds: float) -> None:
    _emit(STEP_DURATION, "Milliseconds", milliseconds, {"StepType": step_type})


def projection_lag(milliseconds: float) -> None:
    _emit(PROJECTION_LAG, "Milliseconds", milliseconds, {})


def _emit(name: str, unit: str, value: float, dimensions: dict[str, str]) -> None:
    invocation = _current.get()
    if invocation is None:
        return
    metrics = invocation.metrics
    if invocation.dimensions is not None and invocation.dimensions != dimensions:
        metrics.flush_metrics()  # the pending metrics go out under their own dimensions
        invocation.dimensions = None
    if invocation.dimensions is None:
        for key, value_ in dimensions.items():
            metrics.add_dimension(name=key, value=value_)
        invocation.dimensions = dict(dimensions)
    metrics.add_metric(name=name, unit=unit, value=value)


def started_clock() -> Callable[[], float]:
    """Milliseconds since this call (for StepDuration)."""
    began = time.perf_counter()
    return lambda: (time.perf_counter() - began) * 1000


# ------------------------------------------------------------------ init phase, SnapStart


class RehearsalContext:
    """The Lambda context of a rehearsal at init (there is no invocation yet)."""

    function_name = "rehearsal"
    function_version = "$LATEST"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:rehearsal"
    aws_request_id = "rehearsal"
    log_group_name = ""
    log_stream_name = ""

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@contextmanager
def rehearsal(service: str) -> Iterator[None]:
    """Inside, invocations of `service`'s instrumented handlers (made with `traced=False`)
    run their whole Powertools path — so the init phase specializes its code too — but what
    they log and the metrics they flush go nowhere. After, Powertools' cold-start flags are
    set back: the first real invocation still reports itself as the cold start."""
    from aws_lambda_powertools.logging import logger as powertools_logger
    from aws_lambda_powertools.metrics.provider import cold_start

    handler = get_logger(service).registered_handler
    previous = handler.setStream(io.StringIO())
    try:
        with redirect_stdout(io.StringIO()):  # EMF documents are printed
            yield
    finally:
        handler.setStream(previous)
        powertools_logger.is_cold_start = True
        cold_start.reset_cold_start_flag()



def lambda_init(prime: Callable[[], None], *, after_restore: Callable[[], None] | None = None) -> bool:
    """Run in an entry module at import. In Lambda: `prime()` does the heavy work now (init
    phase; with SnapStart, the snapshot keeps it), and the runtime hooks are registered:
    before the snapshot, no connection is kept; after a restore, the random generator is
    reseeded (every environment restored from one snapshot would otherwise draw the same
    jitter), and the clients are kept, warm, with their connections closed, when their
    credentials renew themselves — otherwise they are dropped and `after_restore` makes
    them again (`workflow_runs.aws_clients`). Elsewhere: nothing. Returns whether it ran."""
    if not in_lambda():
        return False
    prime()
    _register_snapshot_hooks(after_restore)
    return True


# The hooks this process registered, so the benchmarks can run them where there is no
# SnapStart runtime (`simulate_snapshot_and_restore`).
_registered: list[Callable[[], None] | None] = []


def _register_snapshot_hooks(after_restore: Callable[[], None] | None) -> None:
    _registered.append(after_restore)
    try:
        from snapshot_restore_py import (  # type: ignore[import-not-found]
            register_after_restore,
            register_before_snapshot,
        )
    except ImportError:  # not a SnapStart-capable runtime (or not Lambda's): no snapshot to mind
        return
    register_before_snapshot(forget_connections)
    register_after_restore(restored, after_restore)


def forget_connections() -> None:
    """Before the snapshot: close every pooled connection (a socket cannot outlive it)."""
    from workflow_runs import aws_clients

    aws_clients.close_connections()


def restored(after_restore: Callable[[], None] | None = None) -> None:
    from workflow_runs import aws_clients
    from workflow_runs.store.dynamo import dynamodb_client

    random.seed()  # from os.urandom: this environment's own sequence
    aws_clients.close_connections()  # each client opens its own connection on its next call
    if aws_clients.renew_themselves():
        return  # the clients are kept, warm
    dynamodb_client.cache_clear()
    if after_restore is not None:
        after_restore()  # the owners make their clients again


def simulate_snapshot_and_restore() -> None:
    """What Lambda runs around a snapshot, for a process that did `lambda_init`: every
    before-snapshot hook, then every after-restore hook, in their orders."""
    for _ in _registered:
        forget_connections()
    for after_restore in _registered:
        restored(after_restore)
