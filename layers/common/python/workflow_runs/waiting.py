"""Waiting for a run's end, as the blocking execute does: by watching its event log.

The run's terminal write reaches the event log as its closing event (`result` / `error`),
so the waiter reads the log the way an SSE stream follows it (`Pacing`): at once again
while a page comes back full, every `poll_min` seconds while the run progresses (a step or
the run changing: the end may be next), backing off (×2) to `poll_max` while the log is
idle, and to `THINKING_POLL_MAX_SECONDS` (the old status poll's pace) while only a model's
`thinking` flows. Each read returns only what is new (`cursor > last`); the answer follows
the closing event by at most `poll_min` while the run progresses.

A step known to stay quiet (a `wait` step of a fixed number of seconds: `quiet_steps`)
needs no reads while it waits: once its `waiting` event is read, the waiter holds its reads
until shortly before the step is due, then reads at `poll_min`, so the end that follows it
is seen at once, for fewer reads than backing off would cost.

A step that waits for a person (an `approval` step: `parked_steps`) ends the wait as soon
as its `waiting` event is read: the run cannot end before someone decides, so the caller
gets its 202 with `Location` at once instead of at the deadline.

A log that stays idle for `close_grace` seconds has the run's status read once (a
projection running behind, or failed, must not hold the answer to the deadline).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .states import APPROVAL_STEP, CLOSING_EVENTS, EVENT_ACTIVITY, EVENT_THINKING, Status

PAGE_SIZE = 100
# A quiet step's hold ends this long before it is due (the waiting event is read a little
# after it was written, but the end's events are projected as late), and reads stay at
# `poll_min` until this long after it (the orchestrator's timer, the next step's start).
HOLD_MARGIN_SECONDS = 0.1
BRISK_AFTER_DUE_SECONDS = 0.3
# While only `thinking` flows, reads back off to this (the old status poll's pace).
THINKING_POLL_MAX_SECONDS = 0.5


@dataclass(frozen=True)
class WaitOutcome:
    ended: bool
    # The ended run as the closing `result` event carries it (read consistently by the
    # projector after the run's end): the answer needs no read of its own.
    run: dict[str, Any] | None = None


class RunLog(Protocol):
    def events_after(self, run_id: str, cursor: str | None, limit: int = 100) -> list[tuple[str, str, dict]]: ...

    def run_status(self, run_id: str) -> Any: ...


@dataclass(frozen=True)
class Pacing:
    """How often a reader of a run's event log reads it (the stream follower's pacing)."""

    poll_min: float = 0.05
    poll_max: float = 1.0
    # How long an idle log may stay idle before the run's status is looked at directly.
    close_grace: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any) -> Pacing:
        poll_min = max(0.001, float(settings.sse_poll_min_seconds))
        poll_max = max(poll_min, float(settings.sse_poll_max_seconds))
        # Ten polls at the idle pace: the projector lags by far less; a log whose events
        # expired (TTL) stays silent forever.
        return cls(poll_min=poll_min, poll_max=poll_max, close_grace=max(10 * poll_max, 1.0))

    def next_delay(self, delay: float, got_events: bool) -> float:
        """The pause after a read: `poll_min` while events flow, doubling to `poll_max` while idle."""
        return self.poll_min if got_events else min(delay * 2, self.poll_max)


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
    cursor: str | None = None
    delay = pacing.poll_min
    idle_since: float | None = None
    quiet_steps = quiet_steps or {}
    brisk_until = 0.0  # after a hold: read at `poll_min` until a little past the step's due time
    while True:
        page = log.events_after(run_id, cursor, PAGE_SIZE)
        hold = 0.0
        for event_cursor, name, data in page:
            cursor = event_cursor
            if name in CLOSING_EVENTS:
                carried = data.get("workflowRun") if isinstance(data, dict) else None
                return WaitOutcome(True, carried if isinstance(carried, dict) else None)
            if _waiting_step(name, data) in parked_steps:
                return WaitOutcome(False)
            hold = _quiet_for(name, data, quiet_steps)
        if len(page) == PAGE_SIZE:
            continue  # more is waiting: read on at once
        now = monotonic()
        if hold > HOLD_MARGIN_SECONDS:
            # The step waits: nothing to read until it is due; then read as if events flowed.
            sleep(max(0.0, min(hold - HOLD_MARGIN_SECONDS, deadline - now)))
            if monotonic() >= deadline:
                return WaitOutcome(False)
            idle_since, delay, brisk_until = None, pacing.poll_min, now + hold + BRISK_AFTER_DUE_SECONDS
            continue
        if page:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since >= pacing.close_grace:
            status = log.run_status(run_id)
            if status is None or getattr(status, "terminal", False):
                return WaitOutcome(status is not None)
            idle_since = now
        left = deadline - now
        if left <= 0:
            return WaitOutcome(False)
        # Progress (a step or the run changing) brings the end near; a model's `thinking`
        # alone does not: it may stream for minutes, read at most as often as the old poll.
        progress = any(name != EVENT_THINKING for _, name, _ in page)
        delay = pacing.poll_min if progress else delay
        sleep(min(delay, left))
        if progress or now < brisk_until:
            delay = pacing.poll_min
        else:
            delay = min(delay * 2, pacing.poll_max if not page else min(pacing.poll_max, THINKING_POLL_MAX_SECONDS))


def _waiting_step(name: str, data: Any) -> str | None:
    """The step id of an activity event that says its step is `waiting`, else None."""
    content = data.get("content") if isinstance(data, dict) else None
    if name == EVENT_ACTIVITY and isinstance(content, dict) and content.get("status") == Status.WAITING.value:
        return str(content.get("stepId"))
    return None


def _quiet_for(name: str, data: Any, quiet_steps: Mapping[str, float]) -> float:
    """How long the run stays quiet after this event: a quiet step's `waiting` starts its
    wait; any later event of the run cancels an earlier hold."""
    step_id = _waiting_step(name, data)
    return float(quiet_steps.get(step_id, 0.0)) if step_id is not None else 0.0


def parked_steps_of(steps: Iterable[Any]) -> frozenset[str]:
    """The steps of a workflow that wait for a person: `approval` steps."""
    return frozenset(step.id for step in steps if step.type == APPROVAL_STEP)


def quiet_steps_of(steps: Iterable[Any]) -> dict[str, float]:
    """The steps of a workflow that wait a fixed time: `wait` steps whose seconds are a number."""
    return {step.id: float(step.config["seconds"]) for step in steps
            if step.type == "wait" and isinstance(step.config.get("seconds"), int)
            and not isinstance(step.config.get("seconds"), bool)}
