"""Following one run's event log: what an SSE response streams.

The reader never touches the DynamoDB stream (the event source mapping is its one reader,
and a shard allows about two). It Queries the run's event log for `cursor > last`, with
consistent reads: at once again while a page comes back full, every `poll_min` seconds
while events flow, backing off (×2) to `poll_max` while the log is idle. It ends after the
first closing event (`result` / `error`), or — without one — when it has been following for
`max_seconds` (STREAM_MAX_SECONDS, below the function's timeout in AWS): the client resumes
with `Last-Event-ID` on a fresh stream.

A run it cannot follow ends with an `error` event whose `details` is a string:
- the event log cannot be read (after a few tries);
- the log stays idle while the run is gone, or ended more than `lag_limit` seconds ago
  (its events expired, or its projection failed). A run that ended recently is waited
  for: a projector running behind (throttling, batch retries) looks idle too.

Every blocking store call runs in a worker thread; when the client goes away, the response
cancels this generator at its next await, so no poll outlives the request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from anyio import to_thread
from workflow_runs.states import CLOSING_EVENTS
from workflow_runs.waiting import Pacing

from .cursors import START, is_closing

logger = logging.getLogger("workflow_runs.stream.follow")

PAGE_SIZE = 100
READ_ATTEMPTS = 4


class EventLog(Protocol):
    def events_after(self, run_id: str, cursor: str | None, limit: int = 100) -> list[tuple[str, str, dict]]: ...

    def run_state(self, run_id: str) -> tuple[Any, str] | None:
        """(status, ISO 8601 time of its last change), or None for an unknown run."""
        ...


@dataclass(frozen=True)
class FollowPolicy(Pacing):
    """The log reader's pacing (`workflow_runs.waiting.Pacing`, which the blocking execute
    shares), and what only a stream has: how long a run's closing event may lag, and its
    own longest life."""

    # How long after a run's end its closing event may still be on its way (projection lag).
    lag_limit: float = 300.0
    # A stream's longest life: then it ends without a closing event, and the client resumes.
    max_seconds: float = float("inf")

    @classmethod
    def from_settings(cls, settings: Any) -> FollowPolicy:
        pacing = Pacing.from_settings(settings)
        return cls(poll_min=pacing.poll_min, poll_max=pacing.poll_max, close_grace=pacing.close_grace,
                   max_seconds=float(settings.stream_max_seconds))


@dataclass(frozen=True)
class LogEvent:
    cursor: str
    name: str
    data: dict[str, Any]


def cannot_follow(cursor: str, details: str, message: str = "the run cannot be followed") -> LogEvent:
    # Its id is the last cursor delivered: a client that resumes from it loses nothing.
    return LogEvent(cursor, "error", {"error": message, "details": details})


async def follow(
    log: EventLog,
    run_id: str,
    after: str | None,
    policy: FollowPolicy,
    *,
    monotonic: Callable[[], float] = anyio.current_time,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> AsyncGenerator[LogEvent, None]:
    cursor = after or START
    if is_closing(cursor):
        return  # resumed after the closing event: nothing comes after it
    delay = policy.poll_min
    idle_since: float | None = None
    failures = 0
    deadline = monotonic() + policy.max_seconds
    while True:
        if monotonic() >= deadline:
            logger.info("the stream reached its longest life; the client resumes", extra={"run_id": run_id})
            return
        try:
            page = await to_thread.run_sync(log.events_after, run_id, cursor, PAGE_SIZE)
            failures = 0
        except Exception:
            failures += 1
            logger.exception("reading the event log failed", extra={"run_id": run_id, "attempt": failures})
            if failures >= READ_ATTEMPTS:
                yield cannot_follow(cursor, "its events could not be read; resume with Last-Event-ID")
                return
            await sleep(min(delay * 2**failures, max(0.0, deadline - monotonic())))
            continue
        for event_cursor, name, data in page:
            cursor = event_cursor
            yield LogEvent(event_cursor, name, data)
            if name in CLOSING_EVENTS:
                return
        if len(page) == PAGE_SIZE:
            continue  # more is waiting: read on at once
        if page:
            idle_since, delay = None, policy.poll_min
        else:
            now = monotonic()
            if idle_since is None:
                idle_since = now
            elif now - idle_since >= policy.close_grace:
                ended = await _ended_without_close(log, run_id, policy.lag_limit)
                if ended is not None:
                    yield cannot_follow(cursor, ended)
                    return
                idle_since = now  # still going: look again after another grace period
        await sleep(min(delay, max(0.0, deadline - monotonic())))
        if not page:
            delay = min(delay * 2, policy.poll_max)


async def _ended_without_close(log: EventLog, run_id: str, lag_limit: float) -> str | None:
    """Why an idle log will stay idle, or None while the run may still produce events."""
    try:
        state = await to_thread.run_sync(log.run_state, run_id)
    except Exception:
        logger.exception("reading the run status failed", extra={"run_id": run_id})
        return None
    if state is None:
        return "the run no longer exists"
    status, changed_at = state
    value = getattr(status, "value", status)
    if value in ("completed", "failed", "cancelled") and _seconds_since(changed_at) > lag_limit:
        return f"the run is {value}, but its remaining events are no longer available; get the run instead"
    return None


def _seconds_since(timestamp: str) -> float:
    from datetime import UTC, datetime

    try:
        then = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return float("inf")  # unreadable: treat as long ago rather than wait forever
    return (datetime.now(UTC) - then).total_seconds()
