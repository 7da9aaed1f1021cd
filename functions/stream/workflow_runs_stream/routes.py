"""Thin SSE adapters: parse, authorise, start or find the run, then stream its event log.

Everything that can fail as a request (validation, auth, an unknown or foreign run) fails
BEFORE the stream starts, as the uniform JSON error; once the stream has started, trouble
is told as the closing `error` event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from workflow_runs.errors import DomainError, ValidationFailed
from workflow_runs.service import canonical_uuid
from workflow_runs.settings import Settings
from workflow_runs_http.dependencies import ServiceDep, SettingsDep
from workflow_runs_http.forms import EXECUTE_BODY, IdempotencyKey, parse_execute
from workflow_runs_http.security import PrincipalDep

from .cursors import MAX_CURSOR_CHARS, START, is_cursor
from .follow import FollowPolicy, LogEvent, cannot_follow, follow

logger = logging.getLogger("workflow_runs.stream.routes")

RUNS = "/api/v1/workflow-runs"
runs = APIRouter(prefix=RUNS, tags=["workflow runs (live)"])

SEP = "\n"
PING_DATA = json.dumps({"content": "ping"}, separators=(",", ":"))

UuidPath = Annotated[str, Path(description="a UUID")]
AfterQuery = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_CHARS, description="stream the events after this event id"),
]
LastEventId = Annotated[
    str | None,
    Header(alias="Last-Event-ID", max_length=MAX_CURSOR_CHARS,
           description="the id of the last event received (what EventSource sends on reconnect)"),
]

SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `workflow-run`, `activity-run`, `thinking`, `ping`, then one "
        "closing `result` or `error`. See docs/streaming.md.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@runs.post("/execute/stream", responses=SSE_RESPONSE, openapi_extra=EXECUTE_BODY,
           summary="Execute a workflow and stream its events")
async def execute_stream(request: Request, principal: PrincipalDep, service: ServiceDep, settings: SettingsDep,
                         idempotency_key: IdempotencyKey = None) -> EventSourceResponse:
    body = await parse_execute(request)
    try:
        run = await run_in_threadpool(service.start_run, principal.tenant, body, idempotency_key,
                                      subject=principal.subject)
    except DomainError:
        raise  # a bad request: the uniform JSON error, before any stream
    except Exception:
        logger.exception("the run could not be started", extra={"tenant": principal.tenant})
        failure = cannot_follow(START, "an internal error occurred; try again", "the run could not be started")
        return event_stream(request, settings, _once(failure))
    return event_stream(request, settings, follow(service.store, run.id, START, FollowPolicy.from_settings(settings)))


@runs.get("/{runId}/events", responses=SSE_RESPONSE,
          summary="A run's events: from the first, or after Last-Event-ID / ?after=")
async def run_events(runId: UuidPath, request: Request, principal: PrincipalDep, service: ServiceDep,
                     settings: SettingsDep, after: AfterQuery = None,
                     last_event_id: LastEventId = None) -> EventSourceResponse:
    run_id = canonical_uuid(runId, "runId")
    cursor = resume_cursor(after, last_event_id)
    await run_in_threadpool(service.get_run, principal.tenant, run_id)  # another tenant's run is 404
    return event_stream(request, settings, follow(service.store, run_id, cursor, FollowPolicy.from_settings(settings)))


def resume_cursor(after: str | None, last_event_id: str | None) -> str | None:
    """Where to resume. With both, the later one wins: a browser's EventSource reconnects to
    the same URL (its `?after=`) and sends the newer id in the header."""
    given = {"after": after, "Last-Event-ID": last_event_id}
    problems = [f"{name}: not an event id of this API" for name, value in given.items()
                if value is not None and not is_cursor(value.strip())]
    if problems:
        raise ValidationFailed(problems)
    cursors = [value.strip() for value in given.values() if value is not None]
    return max(cursors) if cursors else None


def event_stream(request: Request, settings: Settings, events: AsyncGenerator[LogEvent, None]) -> EventSourceResponse:
    state = request.app.state

    async def frames() -> AsyncIterator[ServerSentEvent]:
        state.open_streams += 1
        try:
            async with aclosing(events) as stream:
                async for event in stream:
                    yield ServerSentEvent(
                        data=json.dumps(event.data, separators=(",", ":"), ensure_ascii=False),
                        event=event.name,
                        id=event.cursor,
                        sep=SEP,
                    )
        finally:
            state.open_streams -= 1

    return EventSourceResponse(
        frames(),
        ping=settings.sse_ping_seconds,
        ping_message_factory=_ping,
        sep=SEP,
        # Proxies (and the Lambda Web Adapter) must pass each event on as it comes.
        headers={"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"},
    )


def _ping() -> ServerSentEvent:
    return ServerSentEvent(data=PING_DATA, event="ping", sep=SEP)


async def _once(event: LogEvent) -> AsyncGenerator[LogEvent, None]:
    yield event
