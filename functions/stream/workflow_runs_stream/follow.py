"""Following one run's event log: what an SSE response streams.

The reader never touches the DynamoDB stream (the event source mapping is its one reader,
and a shard allows about two). It Queries the run's event log for `cursor > last` through
the one event-log reader (`workflow_runs.log_reader`, which the blocking execute's wait
shares): at once again while a page comes back full, every `poll_min` seconds while a step
of the run is `running`, backing off (×2) to `poll_max` while the run is parked or idle. It ends after the
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
from typing import Any

import anyio
from anyio import to_thread
from workflow_runs.backoff import Backoff
from workflow_runs.events import EventData, cannot_follow_event
from workflow_runs.events import is_closing as is_closing_event
from workflow_runs.log_reader import LogReader, Pacing, read_page
from workflow_runs.log_reader import RunLog as EventLog
from workflow_runs.states import TERMINAL_VALUES

from .cursors import START, is_closing

logger = logging.getLogger("workflow_runs.stream.follow")

READ_ATTEMPTS = 4

__all__ = ["EventLog", "FollowPolicy", "LogEvent", "cannot_follow", "follow"]


@dataclass(frozen=True)
class FollowPolicy(Pacing):
    """The log reader's pacing (`workflow_runs.log_reader.Pacing`, which the blocking execute
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
    data: EventData | dict[str, Any]


def cannot_follow(cursor: str, details: str, message: str = "the run cannot be followed") -> LogEvent:
    # Its id is the last cursor delivered: a client that resumes from it loses nothing.
    return LogEvent(cursor, *cannot_follow_event(details, message))


async def follow(
    log: EventLog,
    run_id: str,
    after: str | None,
    policy: FollowPolicy,
    *,
    monotonic: Callable[[], float] = anyio.current_time,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> AsyncGenerator[LogEvent, None]:
    if is_closing(after or START):
        return  # resumed after the closing event: nothing comes after it
    reader = LogReader(policy, cursor=after or START)
    retries = Backoff(attempts=READ_ATTEMPTS, base_seconds=2 * policy.poll_min, cap_seconds=policy.poll_max,
                      jitter=False)
    failures = 0
    deadline = monotonic() + policy.max_seconds
    while True:
        if monotonic() >= deadline:
            logger.info("the stream reached its longest life; the client resumes", extra={"run_id": run_id})
            return
        try:
            page = await to_thread.run_sync(read_page, log, run_id, reader)
            failures = 0
        except Exception:
            failures += 1
            logger.exception("reading the event log failed", extra={"run_id": run_id, "attempt": failures})
            if failures >= READ_ATTEMPTS:
                yield cannot_follow(reader.cursor or START, "its events could not be read; resume with Last-Event-ID")
                return
            await sleep(min(retries.delay(failures - 1), max(0.0, deadline - monotonic())))
            continue
        for event_cursor, name, data in reader.take(page, monotonic()):
            yield LogEvent(event_cursor, name, data)
            if is_closing_event(name):
                return
        if reader.more_waiting:
            continue  # more is waiting: read on at once
        now = monotonic()
        if reader.idle_check(now):
            ended = await _ended_without_close(log, run_id, policy.lag_limit)
            if ended is not None:
                yield cannot_follow(reader.cursor or START, ended)
                return
        await sleep(min(reader.pause(now), max(0.0, deadline - monotonic())))


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
    if value in TERMINAL_VALUES and _seconds_since(changed_at) > lag_limit:
        return f"the run is {value}, but its remaining events are no longer available; get the run instead"
    return None


def _seconds_since(timestamp: str) -> float:
    from datetime import UTC, datetime

    try:
        then = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return float("inf")  # unreadable: treat as long ago rather than wait forever
    return (datetime.now(UTC) - then).total_seconds()
