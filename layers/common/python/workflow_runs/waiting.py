"""Waiting for a run's end, as the blocking execute does: by watching its event log.

The run's terminal write reaches the event log as its closing event (`result` / `error`),
so the waiter reads the log the way an SSE stream follows it (`Pacing`): at once again
while a page comes back full, every `poll_min` seconds while events flow (a run that is
producing events is the run about to end), backing off (×2) to `poll_max` while the log is
idle. Each read returns only what is new (`cursor > last`), so a waiting second costs no
more reads than the status poll it replaces, and the answer follows the closing event by
at most `poll_min` while the run is busy.

A log that stays idle for `close_grace` seconds has the run's status read once (a
projection running behind, or failed, must not hold the answer to the deadline).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .states import CLOSING_EVENTS

PAGE_SIZE = 100


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
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Block until the run's closing event is in its log (True) or `deadline` (a
    `monotonic()` time) passes (False)."""
    cursor: str | None = None
    delay = pacing.poll_min
    idle_since: float | None = None
    while True:
        page = log.events_after(run_id, cursor, PAGE_SIZE)
        for event_cursor, name, _ in page:
            cursor = event_cursor
            if name in CLOSING_EVENTS:
                return True
        if len(page) == PAGE_SIZE:
            continue  # more is waiting: read on at once
        now = monotonic()
        if page:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since >= pacing.close_grace:
            status = log.run_status(run_id)
            if status is None or getattr(status, "terminal", False):
                return status is not None
            idle_since = now
        left = deadline - now
        if left <= 0:
            return False
        delay = pacing.poll_min if page else delay
        sleep(min(delay, left))
        delay = pacing.next_delay(delay, bool(page))
