"""Faults: the step runner crashing around each of its status writes, the projector's batches
delivered again and failing in part, and executions ending outside the Lambda.

Each case asserts state, never timing: the run ends terminal, its table stream shows exactly
one terminal change, no activity run is left open or recorded twice for one attempt, the kept
counters equal a recount, and the event log equals the sequence the writes stand for.
"""

from __future__ import annotations

import functools
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from workflow_runs.models import ALLOWED_TRANSITIONS, TERMINAL, Status
from workflow_runs.secrets import get_sealer
from workflow_runs.store import RunStore
from workflow_runs_dev import dynamodb_local
from workflow_runs_dev.orchestrator import LocalOrchestrator
from workflow_runs_step_runner.runner import run_step
from workflow_runs_step_runner.steps import registry as real_registry
from workflow_runs_step_runner.steps.base import StepError, StepOutcome

from tests.reliability.support import (
    QUIET,
    TENANT,
    assert_counters_match,
    attempts_per_step,
    create_run,
    open_activities,
    put_workflow,
    run_status_changes,
    soak,
    terminal_moves,
)

pytestmark = pytest.mark.dynamodb_local

# The runner's status writes: each one is conditional, and each is a place to crash.
STATUS_WRITES = ("put_activity", "finish_activity", "transition_run")


# ------------------------------------------------------------------ the fault seam


class InjectedFault(RuntimeError):
    """A crash of the step runner (out of memory, a bug, a lost connection)."""


# What Lambda reports when its service failed around an invocation that may have run: the
# ASL retries it (a class name with a dot, because the name is the error Step Functions matches).
LambdaServiceException = type("Lambda.ServiceException", (Exception,), {})


@dataclass
class FaultPlan:
    """Raise `error` just before or just after the run's `at`-th status write (0-based,
    counted over every invocation of the run), once."""

    at: int
    when: str  # "before" | "after"
    error: type[BaseException] = InjectedFault
    writes: list[str] = field(default_factory=list)
    fired: bool = False

    def label(self) -> str:
        return f"{self.when} write #{self.at}"


class FaultyStore:
    """The store the step runner is given (its `store=` keyword), with one fault planted at a
    status write. Reads and other calls pass through untouched."""

    def __init__(self, store: RunStore, plan: FaultPlan):
        self._store = store
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name not in STATUS_WRITES:
            return attribute

        def write(*args: Any, **kwargs: Any) -> Any:
            plan = self._plan
            index = len(plan.writes)
            plan.writes.append(name)
            armed = index == plan.at and not plan.fired
            if armed and plan.when == "before":
                plan.fired = True
                raise plan.error(f"injected {plan.when} {name}")
            result = attribute(*args, **kwargs)
            if armed:
                plan.fired = True
                raise plan.error(f"injected {plan.when} {name}")
            return result

        return write


class FlakyOnce:
    """A step type that fails retryably on its first attempt (an http 503), then succeeds."""

    def run(self, ctx: Any) -> StepOutcome:
        if ctx.attempt == 1:
            raise StepError("http: GET https://example.com answered 503", retryable=True)
        return StepOutcome(outputs={"attempt": ctx.attempt})


class Registry:
    def get(self, name: str) -> Any:
        return FlakyOnce() if name == "http" else real_registry.get(name)


# A first step, a step retried once, a wait, a last step: every kind of status write the runner
# makes (run → running / waiting / running again / completed; activities running, failed,
# completed, waiting, completed after the wait).
FAULT_WORKFLOW = [
    {"id": "first", "type": "transform", "config": {"output": "one"}},
    {"id": "flaky", "type": "http", "config": {"url": "https://example.com"}, "retry": {"maxAttempts": 3}},
    {"id": "pause", "type": "wait", "config": {"seconds": 1}},
    {"id": "last", "type": "transform", "config": {"output": "two"}},
]
CLEAN_WRITES = 15  # status writes of a clean run of FAULT_WORKFLOW (checked below)


def _runner(store: RunStore) -> Callable[..., dict]:
    return functools.partial(run_step, settings=store.settings, sealer=get_sealer(store.settings),
                             registry=Registry(), logger=QUIET)


class Dispatch:
    """One step-runner function for many runs, each with its own fault plan."""

    def __init__(self, store: RunStore):
        self.store = store
        self.plans: dict[str, FaultPlan] = {}
        self.run = _runner(store)

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        plan = self.plans.get(event["runId"])
        return self.run(event, store=FaultyStore(self.store, plan) if plan else self.store)


def assert_run_settled_cleanly(store: RunStore, run_id: str, changes: list[tuple[str | None, str]],
                               *, check_open: bool = True) -> Status:
    """The invariants every fault case must keep; returns the final status."""
    run = store.get_run_record(run_id).run
    assert run.status in TERMINAL, f"left {run.status.value}"
    assert terminal_moves(changes) == [run.status.value], changes  # one terminal change, the final one
    for old, new in changes[1:]:
        assert Status(new) in ALLOWED_TRANSITIONS[Status(old)], changes
    if check_open:
        assert open_activities(store, run_id) == [], "an activity run left open on an ended run"
    for step_id, attempts in attempts_per_step(store, run_id).items():
        assert len(attempts) == len(set(attempts)), f"{step_id}: an attempt recorded twice {attempts}"
    if run.status is Status.FAILED:
        assert run.error is not None and run.error.message
    return run.status


# ------------------------------------------------------------------ the runner crashes (local orchestrator)


def _drive(store: RunStore, dispatch: Dispatch, run_ids: list[str]) -> dict[str, str]:
    """Run each run to its end on the local orchestrator (the state machine's semantics: Retry
    on StepRetryableError, Catch → RecordFailure, the reconciler on a failed execution)."""
    orchestrator = LocalOrchestrator(invoke=dispatch, store=store, retry_interval_scale=0.001, max_workers=8)
    try:
        for run_id in run_ids:
            orchestrator.start(run_id)
        return {run_id: orchestrator.join(run_id, timeout=60) for run_id in run_ids}
    finally:
        orchestrator.shutdown()


def clean_writes(store: RunStore, workflow_id: str) -> list[str]:
    """The status writes a fault-free run of the workflow makes, in order (the matrix below
    plants one crash around each; counted, not hard-coded, so the runner may change them)."""
    dispatch = Dispatch(store)
    run_id = create_run(store, workflow_id)
    dispatch.plans[run_id] = plan = FaultPlan(at=-1, when="never")
    assert _drive(store, dispatch, [run_id]) == {run_id: "SUCCEEDED"}
    assert store.run_status(run_id) is Status.COMPLETED
    assert attempts_per_step(store, run_id) == {"first": [1], "flaky": [1, 2], "pause": [1], "last": [1]}
    return plan.writes


@pytest.mark.timeout(soak(90, 300))
def test_a_crash_before_or_after_any_status_write_leaves_the_run_terminal_and_counted(race_store: RunStore):
    # Given one run per (status write, before | after), each with its crash planted
    workflow_id = put_workflow(race_store, FAULT_WORKFLOW)
    writes = clean_writes(race_store, workflow_id)
    assert len(writes) >= 8, writes
    dispatch = Dispatch(race_store)
    cases: dict[str, FaultPlan] = {}
    for at in range(len(writes)):
        for when in ("before", "after"):
            run_id = create_run(race_store, workflow_id)
            dispatch.plans[run_id] = cases[run_id] = FaultPlan(at=at, when=when)

    # When the local orchestrator drives them as the state machine would
    executions = _drive(race_store, dispatch, list(cases))

    # Then every run ended, exactly once, with nothing left open and nothing doubled
    changes = run_status_changes(race_store)
    outcomes = {}
    for run_id, plan in cases.items():
        assert plan.fired, plan.label()
        status = assert_run_settled_cleanly(race_store, run_id, changes[run_id])
        outcomes[f"{plan.label()} ({writes[plan.at]})"] = (status.value, executions[run_id])
    # A crash fails the run (the Catch), except once the run has completed: then it stays so.
    last = f"after write #{len(writes) - 1} ({writes[-1]})"
    assert {label for label, (status, _) in outcomes.items() if status == "completed"} == {last}, outcomes
    assert {status for label, (status, _) in outcomes.items() if label != last} == {"failed"}, outcomes
    # … and the dashboard's counters equal a recount (the clean run included)
    all_runs = [r.id for r in race_store.list_runs(TENANT, workflow_id=workflow_id, limit=100).items]
    assert len(all_runs) == len(cases) + 1
    assert_counters_match(race_store, workflow_id, all_runs)


@pytest.mark.timeout(soak(110, 300))
def test_a_lambda_service_error_around_any_status_write_is_retried_to_one_clean_end(race_store: RunStore):
    """Under the real ASL (moto's interpreter): Lambda reports a service error although the
    function may have run (Lambda.ServiceException), and the state machine's Retry invokes
    RunStep again with the next RetryCount. The repeated invocation must find where the run
    stands from the store alone."""
    from tests.integration.sfn_harness import state_machine

    # Given one run per (status write, before | after), each with a service error planted
    workflow_id = put_workflow(race_store, FAULT_WORKFLOW)
    writes = clean_writes(race_store, workflow_id)
    changes_client_ready = run_status_changes  # streams are read outside the mock (credentials)
    dispatch = Dispatch(race_store)
    cases: dict[str, FaultPlan] = {}
    for at in range(len(writes)):
        for when in ("before", "after"):
            run_id = create_run(race_store, workflow_id)
            dispatch.plans[run_id] = cases[run_id] = FaultPlan(at=at, when=when, error=LambdaServiceException)

    # When the state machine runs them all
    with state_machine(dispatch) as machine:
        arns = {run_id: machine.start(run_id) for run_id in cases}
        executions = {run_id: machine.wait_until_ended(arn, timeout=60) for run_id, arn in arns.items()}

    # Then each run completed once, every attempt is recorded once, the counters are exact
    changes = changes_client_ready(race_store)
    problems, left_open = [], []
    for run_id, plan in cases.items():
        label = f"{plan.label()} ({writes[plan.at]})"
        try:
            assert plan.fired
            assert executions[run_id] == "SUCCEEDED", executions[run_id]
            assert assert_run_settled_cleanly(race_store, run_id, changes[run_id], check_open=False) is Status.COMPLETED
        except AssertionError as exc:
            problems.append(f"{label}: {str(exc).splitlines()[0]} {attempts_per_step(race_store, run_id)}")
        if open_activities(race_store, run_id):
            left_open.append(f"{label}: {open_activities(race_store, run_id)}")
    assert problems == [], "\n".join(problems)
    all_runs = [r.id for r in race_store.list_runs(TENANT, workflow_id=workflow_id, limit=100).items]
    assert_counters_match(race_store, workflow_id, all_runs)
    # … and no activity run is left open
    assert left_open == [], "\n".join(left_open)


def test_a_retried_invocation_closes_the_attempt_its_predecessor_left_open(race_store: RunStore):
    # Given a run whose first invocation opened the step's activity run, then died (Lambda
    # reported Lambda.ServiceException although the function had written)
    workflow_id = put_workflow(race_store, [{"id": "only", "type": "transform", "config": {"output": "x"}}])
    run_id = create_run(race_store, workflow_id)
    dispatch = Dispatch(race_store)
    writes = []
    dispatch.plans[run_id] = FaultPlan(at=0, when="after", error=LambdaServiceException, writes=writes)
    with pytest.raises(LambdaServiceException):
        dispatch({"runId": run_id, "attempt": 0})

    # When the state machine's Retry invokes RunStep again with RetryCount 1
    reply = dispatch({"runId": run_id, "attempt": 1})

    # Then the run completes and no attempt of its step is left running
    assert reply["next"] == "done"
    assert race_store.run_status(run_id) is Status.COMPLETED
    assert open_activities(race_store, run_id) == []


# ------------------------------------------------------------------ the projector: redelivered, partly failing batches


class FlakyEventLog:
    """The projector's store: `put_event` fails (a throttled write) with probability `rate`
    while `failing`; everything else passes through. Counts what it refused."""

    def __init__(self, store: RunStore, rate: float, rng: random.Random):
        self._store, self.rate, self.rng = store, rate, rng
        self.failing = True
        self.refused = 0
        self.written = 0

    def put_event(self, *args: Any, **kwargs: Any) -> None:
        if self.failing and self.rng.random() < self.rate:
            self.refused += 1
            raise RuntimeError("ProvisionedThroughputExceededException (injected)")
        self._store.put_event(*args, **kwargs)
        self.written += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


SEEDS = soak(3, 25)


def _ending(cursor: str) -> bool:
    """The events of a run's terminal change: their `~` cursors sort after every other event."""
    return cursor.startswith("~")


def _produce_runs(store: RunStore) -> dict[str, str]:
    """Runs of every ending, played by the real runner on the local orchestrator: their writes
    are on the runs table's stream. Returns {kind: run_id}."""
    from workflow_runs.service import CancelRequest, RunService

    workflows = {
        "completed": put_workflow(store, [{"id": "a", "type": "transform", "config": {"output": "one"}},
                                          {"id": "b", "type": "transform", "config": {"output": "two"}}]),
        "failed": put_workflow(store, [{"id": "a", "type": "transform", "config": {"output": "one"}},
                                       {"id": "guard", "type": "fail", "config": {"message": "no"}}]),
        "thinking": put_workflow(store, [{"id": "ask", "type": "llm", "config": {"prompt": "why is the sea salty?"}}]),
        "retried": put_workflow(store, FAULT_WORKFLOW[:2]),
        "cancelled": put_workflow(store, [{"id": "pause", "type": "wait", "config": {"seconds": 30}},
                                          {"id": "never", "type": "transform", "config": {"output": "x"}}]),
    }
    runs = {kind: create_run(store, workflow_id) for kind, workflow_id in workflows.items()}
    orchestrator = LocalOrchestrator(invoke=Dispatch(store), store=store, retry_interval_scale=0.001)
    try:
        for run_id in runs.values():
            orchestrator.start(run_id)
        for kind in ("completed", "failed", "thinking", "retried"):
            orchestrator.join(runs[kind], timeout=30)
        deadline = time.monotonic() + 10
        while store.run_status(runs["cancelled"]) is not Status.WAITING and time.monotonic() < deadline:
            time.sleep(0.02)
        service = RunService(store, orchestrator, store.settings)
        assert service.cancel(TENANT, CancelRequest(run_ids=[runs["cancelled"]]))[0].status == "cancelled"
        orchestrator.join(runs["cancelled"], timeout=30)
    finally:
        orchestrator.shutdown()
    assert {kind: store.run_status(run_id).value for kind, run_id in runs.items()} == {
        "completed": "completed", "failed": "failed", "thinking": "completed", "retried": "completed",
        "cancelled": "cancelled"}
    return runs


@pytest.mark.timeout(soak(60, 300))
def test_batches_delivered_three_times_and_failing_in_part_leave_every_event_once_in_order(race_store: RunStore):
    from workflow_runs_dev.stream_poller import lambda_record
    from workflow_runs_stream import projector

    from tests.reliability.support import stream_records

    # Given the stream records of runs of every ending, and the event log they stand for
    runs = _produce_runs(race_store)
    arn, raw = stream_records(race_store)
    records = [lambda_record(r, arn) for r in raw]
    expected: dict[str, list[tuple[str, str, dict]]] = {run_id: [] for run_id in runs.values()}
    for record in records:
        for event in projector.plan(record, race_store):
            expected[event.run_id].append((event.cursor, event.name, event.data))
    for events in expected.values():
        events.sort(key=lambda e: e[0])  # the log's order: by cursor
    names = {kind: [name for _, name, _ in expected[run_id]] for kind, run_id in runs.items()}
    assert names["thinking"].count("thinking") >= 1 and names["completed"][-1] == "result"
    assert names["cancelled"][-1] == "error" and names["failed"][-1] == "error"

    closed_early: set[str] = set()
    for seed in range(SEEDS):  # each seed: other faults, another batch size, a fresh event log
        # … projected into a fresh event log through a store that refuses a quarter of the writes
        settings = race_store.settings.model_copy(update={"events_table": f"events-{uuid.uuid4().hex[:10]}"})
        dynamodb_local.create_tables(race_store.client, settings.runs_table, settings.events_table)
        log = FlakyEventLog(RunStore(settings, client=race_store.client), rate=0.25, rng=random.Random(seed))

        def assert_no_gap(log: FlakyEventLog = log) -> None:
            # What a reader polling `cursor > last` could see at this moment: for every run, a
            # prefix of its final log's events (held-back records never let a later event land
            # before an earlier one failed, so a live reader never skips one) …
            for run_id, events in expected.items():
                present = log.events_after(run_id, None, 1000)
                opening = [e for e in present if not _ending(e[0])]
                assert opening == [e for e in events if not _ending(e[0])][: len(opening)], run_id
                # … and no ending event before every event it ends
                if any(_ending(e[0]) for e in present) and len(opening) < sum(not _ending(e[0]) for e in events):
                    closed_early.add(run_id)

        # When every batch is delivered three times (a redelivery starts, as the event source
        # mapping's does, at the lowest sequence number the projector reported failed, or is the
        # whole batch again after a success: a timed-out invocation), then until it succeeds
        batch_size = random.Random(seed).choice([5, 7, 10])
        deliveries = 0
        for start in range(0, len(records), batch_size):
            pending = records[start:start + batch_size]
            attempt = 0
            while pending:
                attempt += 1
                log.failing = attempt <= 3
                deliveries += 1
                failures = projector.handler({"Records": pending}, None, store=log)["batchItemFailures"]
                assert_no_gap()
                failed = {f["itemIdentifier"] for f in failures}
                if failed:
                    first = next(i for i, r in enumerate(pending) if r["dynamodb"]["SequenceNumber"] in failed)
                    pending = pending[first:]
                elif attempt >= 3:
                    pending = []
                assert attempt <= 10, "a batch kept failing with faults off"

        # Then each run's event log is exactly the expected sequence: nothing lost, nothing doubled
        assert log.refused > 0 and deliveries >= 3 * (len(records) // batch_size)
        for kind, run_id in runs.items():
            assert log.events_after(run_id, None, 1000) == expected[run_id], (seed, kind)
    assert not closed_early, [k for k, r in runs.items() if r in closed_early]


def test_a_cancel_closes_its_steps_before_the_run_so_no_batch_boundary_ends_a_stream_early(race_store: RunStore):
    from workflow_runs_dev.stream_poller import lambda_record
    from workflow_runs_stream import projector

    from tests.reliability.support import stream_records

    # Given a cancelled run's records as the stream carries them
    runs = _produce_runs(race_store)
    arn, raw = stream_records(race_store)
    records = [lambda_record(r, arn) for r in raw]
    run_id = runs["cancelled"]
    mine = [i for i, r in enumerate(records) if r["dynamodb"]["Keys"]["PK"]["S"] == f"RUN#{run_id}"]
    terminal = next(i for i in mine if projector._is_terminal_run_change(records[i]))
    closes = [i for i in mine if records[i]["dynamodb"]["Keys"]["SK"]["S"].startswith("R#A#")
              and records[i]["dynamodb"]["NewImage"]["status"]["S"] == "cancelled"]

    # Then the steps' closes come before the run's end in the stream itself …
    assert closes and max(closes) < terminal

    # … so whatever batch ends just before the run's end, its stream is not closed yet
    assert projector.handler({"Records": records[:terminal]}, None, store=race_store)["batchItemFailures"] == []
    present = race_store.events_after(run_id, None, 1000)
    assert not any(name in ("result", "error") for _, name, _ in present)
    assert ("activity-run", "cancelled") in [(n, d["content"]["status"]) for _, n, d in present if n == "activity-run"]


# ------------------------------------------------------------------ executions ending outside the Lambda


def _status_change(run_id: str, status: str) -> dict[str, Any]:
    """The EventBridge event Step Functions sends when an execution ends (the fields we read)."""
    return {"detail-type": "Step Functions Execution Status Change", "source": "aws.states",
            "detail": {"name": run_id, "status": status, "executionArn": f"arn:…:execution:runs:{run_id}"}}


@pytest.mark.timeout(soak(90, 300))
def test_executions_that_end_outside_the_lambda_are_settled_by_the_reconciler(race_store: RunStore):
    """Under the real ASL (moto): an execution that FAILED although the runner never recorded
    it (RunStep and RecordFailure both crashed), one ABORTED from the console mid-wait, one
    TIMED_OUT while its step ran, and a run whose execution never started. Status-change
    events (delivered twice: EventBridge is at-least-once) and two sweeps settle them all."""
    from datetime import UTC, datetime, timedelta

    from workflow_runs.orchestrator import StepFunctionsOrchestrator
    from workflow_runs_step_runner.reconciler import reconcile

    from tests.integration.sfn_harness import state_machine

    steps = [{"id": "first", "type": "transform", "config": {"output": "one"}},
             {"id": "pause", "type": "wait", "config": {"seconds": 30}},
             {"id": "last", "type": "transform", "config": {"output": "two"}}]
    workflow_id = put_workflow(race_store, steps)
    runs = {kind: create_run(race_store, workflow_id) for kind in ("crashed", "aborted", "timed_out", "never_started")}
    dispatch = Dispatch(race_store)

    # `crashed`: the runner dies right after opening the second step's activity run, and from
    # then on every invocation dies (the Catch's RecordFailure and its retries included): the
    # execution FAILS while the run is still `running` with a step open.
    class AlwaysCrashing:
        crashed = False

        def __init__(self, store: RunStore):
            self._store = store

        def __getattr__(self, name: str) -> Any:
            attribute = getattr(self._store, name)
            if AlwaysCrashing.crashed:
                raise InjectedFault("the step runner keeps crashing")
            if name != "put_activity":
                return attribute

            def put_activity(run_id: str, index: int, *args: Any, **kwargs: Any) -> Any:
                written = attribute(run_id, index, *args, **kwargs)
                AlwaysCrashing.crashed = index == 1
                if AlwaysCrashing.crashed:
                    raise InjectedFault("out of memory, say")
                return written

            return put_activity

    run_crashing = _runner(race_store)

    def function(event: dict[str, Any]) -> dict[str, Any]:
        if event["runId"] == runs["crashed"]:
            return run_crashing(event, store=AlwaysCrashing(race_store))
        return dispatch(event)

    with state_machine(function) as machine:
        orchestrator = StepFunctionsOrchestrator(machine.arn, client=machine.client)
        crashed = machine.start(runs["crashed"])
        aborted = machine.start(runs["aborted"])
        timed_out = machine.start(runs["timed_out"])
        assert machine.wait_until_ended(crashed, timeout=30) == "FAILED"
        for kind in ("aborted", "timed_out"):
            deadline = time.monotonic() + 20
            while race_store.run_status(runs[kind]) is not Status.WAITING:
                assert time.monotonic() < deadline, kind
                time.sleep(0.02)
        machine.client.stop_execution(executionArn=aborted, cause="stopped from the console")
        assert machine.wait_until_ended(aborted) == "ABORTED"
        before = {kind: race_store.run_status(run_id) for kind, run_id in runs.items()}

        # When the status-change events arrive (twice each), then two sweeps run (one for the
        # runs no event speaks of: a run never started, a run whose event was lost)
        for _ in range(2):
            for kind, status in (("crashed", "FAILED"), ("aborted", "ABORTED"), ("timed_out", "TIMED_OUT")):
                reconcile(_status_change(runs[kind], status), store=race_store, orchestrator=orchestrator,
                          logger=QUIET)
        later = datetime.now(UTC) + timedelta(hours=1)
        sweeps = [reconcile({"detail-type": "Scheduled Event"}, store=race_store, orchestrator=orchestrator,
                            now=later, logger=QUIET) for _ in range(2)]
        machine.client.stop_execution(executionArn=timed_out)  # let no execution outlive the mock

    # Then no run is left non-terminal, each changed into a terminal status exactly once, no
    # activity run is left open, and the counters equal a recount
    assert before == {"crashed": Status.RUNNING, "aborted": Status.WAITING, "timed_out": Status.WAITING,
                      "never_started": Status.SCHEDULED}
    changes = run_status_changes(race_store)
    final = {kind: assert_run_settled_cleanly(race_store, run_id, changes[run_id]).value for kind, run_id in runs.items()}
    assert final == {"crashed": "failed", "aborted": "cancelled", "timed_out": "failed", "never_started": "failed"}
    errors = {kind: race_store.get_run(TENANT, run_id).error for kind, run_id in runs.items()}
    assert errors["crashed"].message == "the run's execution failed" and errors["crashed"].step_id == "pause"
    assert errors["timed_out"].message == "the run's execution timed out"
    assert errors["never_started"].message == "the run's execution never started"
    assert sweeps[0]["settled"] == 1 and sweeps[1]["settled"] == 0  # the never-started run, once
    assert_counters_match(race_store, workflow_id, list(runs.values()))


# ------------------------------------------------------------------ SSE clients cut and resumed (over HTTP)


RESUME_WORKFLOW = [
    {"id": "prepare", "name": "Prepare", "type": "transform", "config": {"output": "tides and {{ inputs.topic }}"}},
    {"id": "think", "name": "Think", "type": "llm", "config": {"prompt": "{{ steps.prepare.outputs.value }}"}},
    {"id": "pause", "name": "Pause", "type": "wait", "config": {"seconds": 1}},
    {"id": "finish", "name": "Finish", "type": "transform", "config": {"output": {"done": True}}},
]


def _complete_frames(raw: bytes) -> list[Any]:
    """The events a client has fully received in `raw`: an event is dispatched at its blank
    line, so a frame cut anywhere before it is lost to the client (and must come again)."""
    from tests.integration.sse_helpers import parse_frames

    end = raw.rfind(b"\n\n")
    if end < 0:
        return []
    return list(parse_frames(raw[: end + 2].decode("utf-8").split("\n")))


def _read_cut(client: Any, method: str, url: str, cut_at: int, **kwargs: Any) -> tuple[int, list[Any]]:
    """Read a stream and hang up after `cut_at` bytes (or at its end): (status, frames received)."""
    raw = b""
    with client.stream(method, url, **kwargs) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, []
        for chunk in response.iter_raw():
            raw += chunk
            if len(raw) >= cut_at:
                raw = raw[:cut_at]
                break
    return 200, _complete_frames(raw)


def _follow_with_cuts(runtime: Any, workflow_id: str, seed: int) -> tuple[str, list[Any], int]:
    """A client that starts a run over execute/stream, is cut at random byte offsets, and
    resumes each time with Last-Event-ID, until the closing event. Returns (run id, every
    event it received, in order, pings left out; number of connections)."""
    import httpx

    rng = random.Random(seed)
    base = f"{runtime.public_url}/api/v1/workflow-runs"
    auth = {"Authorization": f"Bearer {runtime.token}"}
    key = f"resume-{uuid.uuid4().hex}"
    received: list[Any] = []
    run_id = None
    connections = stalls = 0
    with httpx.Client(timeout=httpx.Timeout(20.0)) as client:
        while not received or received[-1].event not in ("result", "error"):
            connections += 1
            assert connections <= 300, "the client made no progress"
            # Anywhere in the next few frames; a frame longer than that (the closing `result`
            # carries the whole run) is reached by widening the window after each stall.
            cut_at = rng.randint(1, 700) * 2 ** min(stalls, 8)
            if run_id is None:
                # Cut before the first event: the client does not know its run; the same
                # Idempotency-Key streams the same run again instead of starting another.
                status, frames = _read_cut(client, "POST", f"{base}/execute/stream", cut_at,
                                           headers={**auth, "Idempotency-Key": key},
                                           files={"workflowId": (None, workflow_id),
                                                  "inputs": (None, json.dumps({"topic": f"seed {seed}"}))})
            else:
                resume = {"Last-Event-ID": received[-1].id} if received else {}
                status, frames = _read_cut(client, "GET", f"{base}/{run_id}/events", cut_at,
                                           headers={**auth, **resume})
            assert status == 200
            events = [f for f in frames if f.event != "ping"]
            if run_id is None and events:
                run_id = events[0].data["content"]["workflowRunId"]
            stalls = 0 if events else stalls + 1
            received += events
    return run_id, received, connections


@pytest.mark.timeout(soak(90, 600))
def test_sse_clients_cut_at_random_bytes_and_resumed_get_every_event_once_in_order(dev_runtime: Any):
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    from workflow_runs.models import WorkflowDefinition

    # Given a workflow with thinking, a wait and several steps, on the dev server
    workflow_id = str(uuid.uuid4())
    dev_runtime.service.put_workflow("dev", workflow_id, WorkflowDefinition.model_validate(
        {"name": "Resumed", "inputs": [{"name": "topic", "type": "string"}], "steps": RESUME_WORKFLOW}))

    # When clients follow runs through connections cut at random byte offsets
    with ThreadPoolExecutor(max_workers=4) as pool:
        followed = list(pool.map(lambda seed: _follow_with_cuts(dev_runtime, workflow_id, seed),
                                 range(soak(4, 24))))

    # Then each received exactly the run's event log: every event once, in order
    auth = {"Authorization": f"Bearer {dev_runtime.token}"}
    with httpx.Client(timeout=httpx.Timeout(20.0)) as client:
        for run_id, received, connections in followed:
            from tests.integration.sse_helpers import read_stream

            _response, frames = read_stream(client, "GET", f"{dev_runtime.public_url}/api/v1/workflow-runs/{run_id}/events",
                                           headers=auth)
            whole = [(f.id, f.event, f.data) for f in frames if f.event != "ping"]
            assert connections > 2
            assert [(f.id, f.event, f.data) for f in received] == whole
            assert [f.id for f in received] == sorted({f.id for f in received})
            assert whole[-1][1] == "result" and sum(1 for _, name, _ in whole if name == "thinking") >= 1


def test_a_live_stream_waits_for_events_the_projector_delivers_late():
    import anyio
    from workflow_runs_stream.follow import FollowPolicy, follow

    # Given a run that has completed in the table, whose events reach the log only after a
    # projection lag longer than the stream's grace period
    class LaggingLog:
        def __init__(self) -> None:
            self.visible_at = time.monotonic() + 0.3
            self.events = [("0" * 39 + "1-00", "workflow-run", {"content": {"status": "scheduled"}}),
                           ("~" + "0" * 39 + "2-01", "result", {"success": True})]

        def events_after(self, run_id: str, cursor: str | None, limit: int = 100, *, consistent: bool = True) -> list:
            if time.monotonic() < self.visible_at:
                return []
            return [e for e in self.events if cursor is None or e[0] > cursor][:limit]

        def run_state(self, run_id: str) -> tuple[Status, str]:
            from workflow_runs.models import utc_now

            return Status.COMPLETED, utc_now()  # it has just completed

    async def read() -> list[str]:
        policy = FollowPolicy(poll_min=0.005, poll_max=0.01, close_grace=0.1)
        return [event.name async for event in follow(LaggingLog(), "run", None, policy)]

    # When a client follows it from the start, Then it receives the run's events and its result
    assert anyio.run(read) == ["workflow-run", "result"]
