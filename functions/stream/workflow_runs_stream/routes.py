"""Thin SSE adapters: parse, authorise, take a stream slot, start or find the run, then
stream its event log.

Everything that can fail as a request (validation, auth, an unknown or foreign run, the
tenant's stream cap) fails BEFORE the stream starts, as the uniform JSON error; once the
stream has started, trouble is told as the closing `error` event. Every response begins with
`retry: <ms>` (how long a client waits before it reconnects); one that reaches
STREAM_MAX_SECONDS ends without a closing event, and the client resumes with Last-Event-ID.

Plain Starlette (no FastAPI): the request glue is `workflow_runs_http`'s framework-free core,
shared with the API app. Heavy modules (pydantic, the service, the store) load on first use.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from workflow_runs.errors import DomainError, TooManyRequests, ValidationFailed
from workflow_runs_http.collaborators import service_of, settings_of
from workflow_runs_http.execute_body import idempotency_key, parse_execute
from workflow_runs_http.principal import resolve_principal

from .cursors import MAX_CURSOR_CHARS, START, is_closing_or_later, is_cursor
from .follow import FollowPolicy, LogEvent, cannot_follow, follow

if TYPE_CHECKING:
    from workflow_runs.settings import Settings
    from workflow_runs.store import StreamLease
    from workflow_runs.store.ports import StreamLeases

    from .telemetry import StreamTelemetry

logger = logging.getLogger("workflow_runs.stream.routes")

RUNS = "/api/v1/workflow-runs"
SEP = "\n"
PING_DATA = json.dumps({"content": "ping"}, separators=(",", ":"))
# A lease outlives its stream's longest life by this much: time for the stream to say goodbye.
LEASE_MARGIN_SECONDS = 60
# What a refused client is told to wait: streams end when their runs do, so slots free often.
RETRY_AFTER_SECONDS = 10


def stream_routes() -> list[Route]:
    events = Route(f"{RUNS}/{{runId}}/events", run_events, methods=["GET"])
    # Starlette answers HEAD on every GET route; a HEAD would hold a stream slot for a body
    # nobody reads. 405, as before.
    (events.methods or set()).discard("HEAD")
    return [Route(f"{RUNS}/execute/stream", execute_stream, methods=["POST"]), events]


async def execute_stream(request: Request) -> Response:
    principal = await resolve_principal(request)
    service, settings = service_of(request), settings_of(request)
    key = idempotency_key(request)
    body = await parse_execute(request)
    slot = await StreamSlot.take(request, settings, principal.tenant)  # before the run: a 429 starts nothing
    try:
        run = await run_in_threadpool(service.start_run, principal.tenant, body, key, subject=principal.subject)
    except DomainError:
        await slot.give_back()
        raise  # a bad request: the uniform JSON error, before any stream
    except Exception:
        logger.exception("the run could not be started", extra={"tenant": principal.tenant})
        failure = cannot_follow(START, "an internal error occurred; try again", "the run could not be started")
        return event_stream(request, settings, _once(failure), slot=slot)
    slot.keys["run_id"] = run.id
    return event_stream(request, settings, follow(service.store, run.id, START, FollowPolicy.from_settings(settings)),
                        slot=slot)


async def run_events(request: Request) -> Response:
    from workflow_runs.service import canonical_uuid  # the service loads on first use

    principal = await resolve_principal(request)
    service, settings = service_of(request), settings_of(request)
    run_id = canonical_uuid(request.path_params["runId"], "runId")
    cursor = resume_cursor(request.query_params.get("after"), request.headers.get("last-event-id"))
    await run_in_threadpool(service.get_run, principal.tenant, run_id)  # another tenant's run is 404
    if cursor is not None and is_closing_or_later(cursor):
        # Nothing comes after the closing event: an EventSource stops reconnecting on a 204.
        return Response(status_code=204)
    slot = await StreamSlot.take(request, settings, principal.tenant, run_id)
    return event_stream(request, settings, follow(service.store, run_id, cursor, FollowPolicy.from_settings(settings)),
                        slot=slot)


def resume_cursor(after: str | None, last_event_id: str | None) -> str | None:
    """Where to resume. With both, the later one wins: a browser's EventSource reconnects to
    the same URL (its `?after=`) and sends the newer id in the header."""
    given = {"after": after, "Last-Event-ID": last_event_id}
    too_long = [f"{name}: String should have at most {MAX_CURSOR_CHARS} characters"
                for name, value in given.items() if value is not None and len(value) > MAX_CURSOR_CHARS]
    if too_long:
        raise ValidationFailed(too_long)
    problems = [f"{name}: not an event id of this API" for name, value in given.items()
                if value is not None and not is_cursor(value.strip())]
    if problems:
        raise ValidationFailed(problems)
    cursors = [value.strip() for value in given.values() if value is not None]
    return max(cursors) if cursors else None


class StreamSlot:
    """One of the tenant's STREAM_MAX_PER_TENANT open streams (a lease in the runs table,
    shared by every instance), its log keys and its telemetry."""

    def __init__(self, telemetry: StreamTelemetry, keys: dict[str, str], lease: StreamLease | None = None,
                 release: Callable[[StreamLease], None] | None = None):
        self.telemetry, self.keys, self.lease, self._release = telemetry, keys, lease, release
        self.opened = time.monotonic()

    @classmethod
    async def take(cls, request: Request, settings: Settings, tenant: str, run_id: str | None = None) -> StreamSlot:
        store: StreamLeases = service_of(request).store
        telemetry = telemetry_of(request)
        keys = {"request_id": request_id(request), "tenant": tenant, **({"run_id": run_id} if run_id else {})}
        limit = settings.stream_max_per_tenant
        ttl = int(settings.stream_max_seconds) + LEASE_MARGIN_SECONDS
        lease = await run_in_threadpool(store.acquire_stream_lease, tenant, limit, ttl)
        if lease is None:
            telemetry.stream_refused(keys, limit)
            raise TooManyRequests(f"this tenant has {limit} open streams, the most it may have; "
                                  "close one or try again later", retry_after_seconds=RETRY_AFTER_SECONDS)
        telemetry.stream_opened(keys, lease.open_streams)
        return cls(telemetry, keys, lease, store.release_stream_lease)

    async def give_back(self) -> None:
        lease, self.lease = self.lease, None
        if lease is None or self._release is None:
            return
        with anyio.CancelScope(shield=True):  # a client gone (cancellation) must not keep the slot
            try:
                await run_in_threadpool(self._release, lease)
            except Exception:
                logger.exception("a stream lease could not be given back; it expires", extra=self.keys)
        self.telemetry.stream_closed(self.keys, time.monotonic() - self.opened, "ended")


class StreamResponse(EventSourceResponse):
    """An SSE response that gives its stream slot back however it ends (even unstarted)."""

    def __init__(self, *args: Any, on_close: Callable[[], Awaitable[None]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._on_close is not None:
                await self._on_close()


def event_stream(request: Request, settings: Settings, events: AsyncGenerator[LogEvent, None], *,
                 slot: StreamSlot | None = None) -> StreamResponse:
    state = request.app.state
    retry = Retry(settings.sse_retry_ms)

    async def frames() -> AsyncIterator[bytes]:
        state.open_streams += 1
        try:
            async with aclosing(events) as stream:
                async for event in stream:
                    yield retry.lead(ServerSentEvent(
                        data=json.dumps(event.data, separators=(",", ":"), ensure_ascii=False),
                        event=event.name,
                        id=event.cursor,
                        sep=SEP,
                    ))
            if not retry.sent:  # ended before any event (its longest life, idle): still tell the pace
                yield retry.lead(ServerSentEvent(comment="end", sep=SEP))
        finally:
            state.open_streams -= 1

    def ping() -> Any:  # bytes: sse-starlette sends them as they are
        return retry.lead(ServerSentEvent(data=PING_DATA, event="ping", sep=SEP))

    return StreamResponse(
        frames(),
        ping=settings.sse_ping_seconds,
        ping_message_factory=ping,
        sep=SEP,
        # Proxies (and the Lambda Web Adapter) must pass each event on as it comes.
        headers={"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"},
        on_close=slot.give_back if slot is not None else None,
    )


class Retry:
    """The `retry:` line, written before the first frame's fields (sse-starlette would put it
    last), so a response's first line is always `retry: <ms>`."""

    def __init__(self, milliseconds: int):
        self.milliseconds, self.sent = milliseconds, False

    def lead(self, event: ServerSentEvent) -> bytes:
        frame = event.encode()
        if self.sent:
            return frame
        self.sent = True
        return f"retry: {self.milliseconds}{SEP}".encode() + frame


def telemetry_of(request: Request) -> StreamTelemetry:
    injected = getattr(request.app.state, "telemetry", None)
    if injected is not None:
        return injected
    from .telemetry import default_telemetry

    return default_telemetry()


def request_id(request: Request) -> str:
    """The Lambda request id the Web Adapter passes on (a log key only, never evidence), or a
    fresh one off Lambda."""
    raw = request.headers.get("x-amzn-lambda-context")
    if raw:
        try:
            value = json.loads(raw).get("request_id")
        except (ValueError, AttributeError):
            value = None
        if isinstance(value, str) and value:
            return value[:64]
    return uuid.uuid4().hex


async def _once(event: LogEvent) -> AsyncGenerator[LogEvent, None]:
    yield event
