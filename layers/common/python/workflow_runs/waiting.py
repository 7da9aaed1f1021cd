"""Waiting for a run's end, as the blocking execute does: by watching its event log.

The run's terminal write reaches the event log as its closing event (`result` / `error`),
so the waiter reads the log with the one event-log reader an SSE stream follows it with
(`workflow_runs.log_reader`): at `poll_min` while a step runs, backing off while the run is
parked or idle. Each read returns only what is new (`cursor > last`); the answer follows
the closing event by at most `poll_min` while a step runs.

A step known to stay quiet (a `wait` step of a fixed number of seconds: `quiet_steps`)
needs no reads while it waits: once its `waiting` event is read, the waiter holds its reads
until shortly before the step is due, then reads at `poll_min`, so the end that follows it
is seen at once, for fewer reads than backing off would cost.

A step that waits for a person (an `approval` step: `parked_steps`) ends the wait as soon
as its `waiting` event is read: the run cannot end before someone decides, so the caller
gets its 202 with `Location` at once instead of at the deadline.

A log that stays idle for `close_grace` seconds has the run's status read once (a
projection running behind, or failed, must not hold the answer to the deadline).

A read that fails (the store stayed busy through its retries) counts as a read that found
nothing: the wait goes on to its deadline, and the caller answers from the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import Unavailable
from .events import carried_run, is_closing, waiting_step
from .log_reader import LogReader, Pacing, RunLog, read_page
from .states import APPROVAL_STEP, WAIT_STEP


@dataclass(frozen=True)
class WaitOutcome:
    ended: bool
    # The ended run as the closing `result` event carries it (read consistently by the
    # projector after the run's end): the answer needs no read of its own.
    run: dict[str, Any] | None = None


def wait_for_end(
    log: RunLog,
    run_id: str,
    deadline: float,
    pacing: Pacing,
    *,
    quiet_steps: Mapping[str, float] | None = None,
    parked_steps: Collection[str] = (),
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitOutcome:
    """Block until the run's closing event is in its log (ended) or `deadline` (a
    `monotonic()` time) passes, or one of `parked_steps` waits for a decision (not ended).
    `quiet_steps`: step id → seconds it waits."""
    reader = LogReader(pacing, quiet_steps=quiet_steps or {})
    while True:
        for _, name, data in reader.take(_read(log, run_id, reader), monotonic()):
            if is_closing(name):
                return WaitOutcome(True, carried_run(data))
            if waiting_step(name, data) in parked_steps:
                return WaitOutcome(False)
        if reader.more_waiting:
            continue  # more is waiting: read on at once
        now = monotonic()
        if reader.idle_check(now):
            try:
                state = log.run_state(run_id)
            except Unavailable:
                state = (None, "")  # busy: not known to have ended; look again after another grace
            if state is None or getattr(state[0], "terminal", False):
                return WaitOutcome(state is not None)
        left = deadline - now
        if left <= 0:
            return WaitOutcome(False)
        sleep(min(reader.pause(now), left))


def _read(log: RunLog, run_id: str, reader: LogReader) -> list[tuple[str, str, Any]]:
    try:
        return read_page(log, run_id, reader)
    except Unavailable:
        return []  # busy: nothing read this time; the wait goes on


def parked_steps_of(steps: Iterable[Any]) -> frozenset[str]:
    """The steps of a workflow that wait for a person: `approval` steps."""
    return frozenset(step.id for step in steps if step.type == APPROVAL_STEP)


def quiet_steps_of(steps: Iterable[Any]) -> dict[str, float]:
    """The steps of a workflow that wait a fixed time: `wait` steps whose seconds are a number."""
    return {step.id: float(step.config["seconds"]) for step in steps
            if step.type == WAIT_STEP and isinstance(step.config.get("seconds"), int)
            and not isinstance(step.config.get("seconds"), bool)}
