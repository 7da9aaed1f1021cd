"""The one reader of a run's event log, behind the blocking execute's wait
(`workflow_runs.waiting`) and the SSE follower (`workflow_runs_stream.follow`).

It holds no I/O: each caller reads a page (`events_after(run, reader.cursor, PAGE_SIZE,
consistent=reader.consistent)`), hands it to `take`, acts on the events, and asks `pause`
how long to wait before the next read. So the two loops around it — one blocking in a
thread, one async with cancellation — read the log the same way:

- at once again while a page comes back full;
- every `poll_min` while one of the run's steps is `running` (its end, the next event, may
  come any moment: a model call or an HTTP step that was quiet for seconds is still read
  at the fast pace, so its end reaches the reader within `poll_min`);
- after a step known to stay quiet for a fixed time starts waiting (`quiet_steps`: a
  `wait` step's seconds), nothing until shortly before it is due, then `poll_min`;
- otherwise — the run parked (a step `waiting` for a person or a timer), between steps, or
  a reader that resumed mid-run and has not seen a step start — backing off ×2 per empty
  read from `poll_min` to `poll_max`;
- after `close_grace` seconds without an event, `idle_check` says to look at the run's
  status once (a projection running behind, or failed, must not hold a reader forever).

Consistency (docs/streaming.md, "What a stream costs"): a read taken while backing off is
eventually consistent (half the read units); one that returns events is taken again
consistently before the cursor moves past them, so a replica behind the leader can never
make the reader skip an event. While a step runs, reads are consistent: an eventually
consistent read may trail the latest write, which would add to the latency they exist for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .backoff import Backoff
from .events import activity_of, waiting_step
from .states import Status

PAGE_SIZE = 100
# A quiet step's hold ends this long before it is due (the waiting event is read a little
# after it was written, but the end's events are projected as late), and reads stay at
# `poll_min` until this long after it (the orchestrator's timer, the next step's start).
HOLD_MARGIN_SECONDS = 0.1
BRISK_AFTER_DUE_SECONDS = 0.3

Page = list[tuple[str, str, dict[str, Any]]]


class RunLog(Protocol):
    """What the reader's callers need of the store."""

    def events_after(self, run_id: str, cursor: str | None, limit: int = 100, *,
                     consistent: bool = True) -> Page: ...

    def run_state(self, run_id: str) -> tuple[Any, str] | None:
        """(status, ISO 8601 time of its last change), or None for an unknown run."""
        ...


@dataclass(frozen=True)
class Pacing:
    """How often a reader of a run's event log reads it."""

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

    @property
    def idle_backoff(self) -> Backoff:
        return Backoff(base_seconds=self.poll_min, cap_seconds=self.poll_max, jitter=False)


@dataclass
class LogReader:
    pacing: Pacing
    cursor: str | None = None
    # step id → the seconds a `wait` step waits (its end is not read for before it is due)
    quiet_steps: Mapping[str, float] = field(default_factory=dict)
    # Reads since the stream last heard of something (0: the next pause is `poll_min`).
    _empty_reads: int = 0
    _running: set[str] = field(default_factory=set)  # activity runs last seen `running`
    _hold: float = 0.0
    _brisk_until: float = float("-inf")
    _idle_since: float | None = None
    _last_full: bool = False

    @property
    def stepping(self) -> bool:
        """A step of the run is `running`, as far as this reader has seen."""
        return bool(self._running)

    @property
    def more_waiting(self) -> bool:
        """The last page came back full: read on at once."""
        return self._last_full

    @property
    def consistent(self) -> bool:
        """Whether the next read must be strongly consistent (see the module's docstring)."""
        return self.stepping or self._empty_reads == 0

    def take(self, page: Page, now: float) -> Page:
        """Account for a page read at `now` (a monotonic time); the events to act on, in order.
        Advances the cursor past them."""
        self._last_full = len(page) >= PAGE_SIZE
        self._hold = 0.0
        for cursor, name, data in page:
            self.cursor = cursor
            activity = activity_of(name, data)
            if activity is not None:
                key = str(activity.get("activityRunId") or activity.get("stepId"))
                if activity["status"] == Status.RUNNING.value:
                    self._running.add(key)
                else:
                    self._running.discard(key)
            step = waiting_step(name, data)
            self._hold = float(self.quiet_steps.get(step, 0.0)) if step is not None else 0.0
        if page:
            self._empty_reads, self._idle_since = 0, None
        else:
            self._empty_reads += 1
            if self._idle_since is None:
                self._idle_since = now
        return page

    def pause(self, now: float) -> float:
        """How long to wait before the next read."""
        if self._last_full:
            return 0.0
        if self._hold > HOLD_MARGIN_SECONDS:
            hold, self._hold = self._hold, 0.0
            self._brisk_until = now + hold + BRISK_AFTER_DUE_SECONDS
            self._empty_reads, self._idle_since = 0, None  # the hold is not idleness
            return hold - HOLD_MARGIN_SECONDS
        if self.stepping or self._empty_reads == 0 or now < self._brisk_until:
            return self.pacing.poll_min
        return self.pacing.idle_backoff.delay(self._empty_reads - 1)

    def idle_check(self, now: float) -> bool:
        """Whether the log has been idle for `close_grace`: look at the run's status now
        (the next idle spell is counted from here)."""
        if self._idle_since is not None and now - self._idle_since >= self.pacing.close_grace:
            self._idle_since = now
            return True
        return False


def read_page(log: RunLog, run_id: str, reader: LogReader) -> Page:
    """One read of the log after the reader's cursor; an eventually consistent page with
    events is read again consistently before anything in it is used."""
    consistent = reader.consistent
    page = log.events_after(run_id, reader.cursor, PAGE_SIZE, consistent=consistent)
    if page and not consistent:
        page = log.events_after(run_id, reader.cursor, PAGE_SIZE, consistent=True)
    return page
