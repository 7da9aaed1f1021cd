"""Following one run's event log: what an SSE response streams.

The reader never touches the DynamoDB stream (the event source mapping is its one reader,
and a shard allows about two). It Queries the run's event log for `cursor > last` through
the one event-log reader (`workflow_runs.log_reader`, which the blocking execute's wait
shares): at once again while a page comes back full, every `poll_min` seconds while a step
of the run is `running`, backing off (×2) to `poll_max` while the run is parked or idle. It ends after the
first closing event (`result` / `error`), or — without one — when it has been following for
`max_seconds` (STREAM_MAX_SECONDS, below the function's timeout in AWS): the client resumes
with `Last-Event-ID` on a fresh stream.

A read that fails (the store stayed busy through its retries) keeps the connection: the
reader tries again, backing off to `poll_max`, until the stream's longest life; then it
ends without a closing event and the client resumes. A log that stays idle for
`close_grace` seconds has the run read: when the run has ended, the stream ends with the
closing event told from the run (workflow_runs.closing, the same content the projector
writes, under the repair's cursor): a log behind its run (a projection running late or
failed, events expired) never holds a reader past its end. A run that no longer exists
ends the stream with an `error` event whose `details` is a string.

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
from workflow_runs.backoff import Backoff
from workflow_runs.closing import RunReader, closing_events, ended_run
from workflow_runs.events import EventData, cannot_follow_event
from workflow_runs.events import is_closing as is_closing_event
from workflow_runs.log_reader import LogReader, Pacing, RunLog, read_page

from .cursors import START, is_closing

logger = logging.getLogger("workflow_runs.stream.follow")

__all__ = ["EventLog", "FollowPolicy", "LogEvent", "cannot_follow", "follow"]


class EventLog(RunLog, RunReader, Protocol):
    """The run's event log, and the run itself (to end from its status)."""


@dataclass(frozen=True)
class FollowPolicy(Pacing):
    """The log reader's pacing (`workflow_runs.log_reader.Pacing`, which the blocking execute
    shares), and what only a stream has: its own longest life."""

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
    retries = Backoff(attempts=2, base_seconds=2 * policy.poll_min, cap_seconds=policy.poll_max,
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
            logger.warning("reading the event log failed; the stream goes on", exc_info=True,
                           extra={"run_id": run_id, "attempt": failures})
            await sleep(min(retries.delay(min(failures - 1, 20)), max(0.0, deadline - monotonic())))
            continue
        for event_cursor, name, data in reader.take(page, monotonic()):
            yield LogEvent(event_cursor, name, data)
            if is_closing_event(name):
                return
        if reader.more_waiting:
            continue  # more is waiting: read on at once
        now = monotonic()
        if reader.idle_check(now):
            ended = await _ended_without_close(log, run_id)
            if isinstance(ended, str):
                yield cannot_follow(reader.cursor or START, ended)
                return
            if ended:
                for event in ended:
                    yield event
                return
        await sleep(min(reader.pause(now), max(0.0, deadline - monotonic())))


async def _ended_without_close(log: EventLog, run_id: str) -> list[LogEvent] | str | None:
    """What ends an idle log's stream: the run's closing events told from its status when
    it has ended, why it cannot end otherwise (a string), or None while the run goes on (or
    the store is too busy to say)."""
    from workflow_runs.errors import NotFound

    try:
        run = await to_thread.run_sync(ended_run, log, run_id)
    except NotFound:
        return "the run no longer exists"
    except Exception:
        logger.warning("reading the run's status failed", exc_info=True, extra={"run_id": run_id})
        return None
    if run is None:
        return None
    logger.info("the event log is behind the run's end; closing from its status", extra={"run_id": run_id})
    return [LogEvent(cursor, name, data) for cursor, name, data in closing_events(run)]
