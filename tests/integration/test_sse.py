"""The SSE app over HTTP, end to end on one machine: runs written through the real store
(as the step runner writes them) on DynamoDB Local → its stream → the stream poller → the
projector → the event log → the SSE app under uvicorn → httpx."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.requests import Request
from workflow_runs.models import Status
from workflow_runs.service import CancelRequest, RunService
from workflow_runs.settings import Settings
from workflow_runs.store import NewRun, RunStore
from workflow_runs_dev import dynamodb_local
from workflow_runs_dev.stream_poller import StreamPoller
from workflow_runs_stream import projector
from workflow_runs_stream.app import create_app
from workflow_runs_stream.cursors import is_closing
from workflow_runs_stream.routes import event_stream
from workflow_runs_stream.telemetry import StreamTelemetry

from tests.integration.sse_helpers import (
    EXPECTED_COMPLETED,
    HEADERS,
    LLM_STEP,
    OTHER_TENANT,
    RUNS,
    TENANT,
    TWO_STEPS,
    CountingLog,
    RunWriter,
    ScriptedOrchestrator,
    ServerThread,
    events_of,
    parse_frames,
    read_stream,
    script_completed,
    script_failed,
    script_hangs,
    script_thinking,
    shape,
    wait_for,
    workflow,
)
from tests.support import dynamodb, make_settings

PING_SECONDS = 0.3
READ_TIMEOUT = httpx.Timeout(15.0)


@dataclass
class Stack:
    settings: Settings
    store: RunStore
    log: CountingLog
    orchestrator: ScriptedOrchestrator
    service: RunService
    app: object
    server: ServerThread
    poller: StreamPoller
    http: httpx.Client
    completed_wf: str
    failed_wf: str
    thinking_wf: str
    hanging_wf: str

    def url(self, path: str) -> str:
        return self.server.url + path

    def new_run(self, workflow_id: str, script=None) -> str:
        """A run created and (optionally) played to its end before anyone reads it."""
        run_id = str(uuid.uuid4())
        wf = self.store.get_workflow(TENANT, workflow_id)
        self.store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=wf, inputs=[]))
        if script is not None:
            script(RunWriter(self.store, run_id))
        return run_id

    def projected(self) -> None:
        assert self.poller.wait_idle(10), "the poller did not catch up"

    def events(self, run_id: str, **kwargs) -> tuple[httpx.Response, list]:
        headers = {**HEADERS, **kwargs.pop("headers", {})}
        return read_stream(self.http, "GET", self.url(f"{RUNS}/{run_id}/events"), headers=headers, **kwargs)


@pytest.fixture(scope="module")
def stack(dynamodb_local_endpoint: str) -> Iterator[Stack]:
    settings = make_settings(dynamodb_local_endpoint, sse_ping_seconds=PING_SECONDS,
                             sse_poll_min_seconds=0.02, sse_poll_max_seconds=0.1)
    client = dynamodb(dynamodb_local_endpoint)
    dynamodb_local.create_tables(client, settings.runs_table, settings.events_table)
    store = RunStore(settings, client=client)
    log = CountingLog(store)
    orchestrator = ScriptedOrchestrator(store)
    service = RunService(log, orchestrator, settings)  # the app reads the event log through `log`
    ids = {name: str(uuid.uuid4()) for name in ("completed", "failed", "thinking", "hanging")}
    store.put_workflow(TENANT, ids["completed"], workflow(TWO_STEPS))
    store.put_workflow(TENANT, ids["failed"], workflow(TWO_STEPS, name="Fails"))
    store.put_workflow(TENANT, ids["thinking"], workflow(LLM_STEP, name="Thinks"))
    store.put_workflow(TENANT, ids["hanging"], workflow(TWO_STEPS, name="Hangs"))
    orchestrator.scripts.update({ids["failed"]: script_failed, ids["thinking"]: script_thinking,
                                 ids["hanging"]: script_hangs})
    app = create_app(settings=settings, service=service, internal_listener=True)
    poller = StreamPoller(settings, functools.partial(projector.handler, store=store))
    with poller, ServerThread(app) as server, httpx.Client(timeout=READ_TIMEOUT) as http:
        yield Stack(settings, store, log, orchestrator, service, app, server, poller, http,
                    ids["completed"], ids["failed"], ids["thinking"], ids["hanging"])


# ------------------------------------------------------------------ order and shapes


def test_completed_run_streams_every_change_in_order_then_result(stack: Stack):
    run_id = stack.new_run(stack.completed_wf, script_completed)
    stack.projected()

    response, frames = stack.events(run_id)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert shape(frames) == EXPECTED_COMPLETED
    events = events_of(frames)
    assert all(f.id for f in events) and len({f.id for f in events}) == len(events)
    assert [f.id for f in events] == sorted(f.id for f in events)
    first = events[0]
    assert first.data == {"content": {"workflowRunId": run_id, "status": "scheduled"}}
    activity = events[2].data["content"]
    assert set(activity) == {"workflowRunId", "activityRunId", "stepId", "status", "attempt"}
    assert activity["workflowRunId"] == run_id
    result = events[-1].data
    assert result["success"] is True
    assert result["workflowRun"]["id"] == run_id
    assert [a["status"] for a in result["workflowRun"]["activityRuns"]] == ["completed", "completed"]
    assert "envs" not in json.dumps(result)


def test_failed_run_closes_with_error_naming_the_step(stack: Stack):
    run_id = stack.new_run(stack.failed_wf, script_failed)
    stack.projected()

    _, frames = stack.events(run_id)

    assert shape(frames) == [
        ("workflow-run", "scheduled"),
        ("workflow-run", "running"),
        ("activity-run", "fetch", "running", 1),
        ("activity-run", "fetch", "failed", 1),
        ("workflow-run", "failed"),
        ("error", "fetch said no"),
    ]
    assert events_of(frames)[-1].data["details"] == {"workflowRunId": run_id, "status": "failed", "stepId": "fetch"}


def test_cancelled_run_closes_with_error_after_its_open_activity_is_cancelled(stack: Stack):
    run_id = stack.new_run(stack.completed_wf, script_hangs)
    [result] = stack.service.cancel(TENANT, _cancel([run_id]))
    assert result.status == "cancelled"
    stack.projected()

    _, frames = stack.events(run_id)

    # The cancel closes the open activity before the run's terminal write, so its event
    # comes first; the closing one always sorts last.
    assert shape(frames) == [
        ("workflow-run", "scheduled"),
        ("workflow-run", "running"),
        ("activity-run", "fetch", "running", 1),
        ("activity-run", "fetch", "cancelled", 1),  # closed before the run ends
        ("workflow-run", "cancelled"),
        ("error", "run cancelled"),
    ]
    closing = events_of(frames)[-1]
    assert closing.data["details"] == {"workflowRunId": run_id, "status": "cancelled", "stepId": None}
    assert is_closing(closing.id)


def test_thinking_text_arrives_in_order_between_the_step_status_changes(stack: Stack):
    run_id = stack.new_run(stack.thinking_wf, script_thinking)
    stack.projected()

    _, frames = stack.events(run_id)

    assert shape(frames) == [
        ("workflow-run", "scheduled"),
        ("workflow-run", "running"),
        ("activity-run", "think", "running", 1),
        ("thinking", "think", "Reading the prompt. "),
        ("thinking", "think", "Weighing it. "),
        ("thinking", "think", "Answering."),
        ("activity-run", "think", "completed", 1),
        ("workflow-run", "completed"),
        ("result", "completed"),
    ]
    activity_id = events_of(frames)[2].content["activityRunId"]
    assert all(f.data["activityRunId"] == activity_id for f in events_of(frames) if f.event == "thinking")


# ------------------------------------------------------------------ execute/stream


def test_execute_stream_with_form_data_streams_the_new_run_live(stack: Stack):
    stack.orchestrator.pause = 0.05
    try:
        response, frames = read_stream(
            stack.http, "POST", stack.url(f"{RUNS}/execute/stream"), headers=HEADERS,
            files={"workflowId": (None, stack.completed_wf), "inputs": (None, json.dumps({"topic": "tides"}))},
        )
    finally:
        stack.orchestrator.pause = 0.0
    assert response.status_code == 200
    assert shape(frames) == EXPECTED_COMPLETED
    run = events_of(frames)[-1].data["workflowRun"]
    assert run["inputs"] == [{"name": "topic", "value": "tides"}]
    # What arrived live is exactly what a replay gives.
    _, replay = stack.events(run["id"])
    assert [(f.id, f.event, f.data) for f in events_of(replay)] == [(f.id, f.event, f.data) for f in events_of(frames)]


def test_execute_stream_with_json_body_streams_a_failing_run_to_its_error(stack: Stack):
    response, frames = read_stream(stack.http, "POST", stack.url(f"{RUNS}/execute/stream"), headers=HEADERS,
                                   json={"workflowId": stack.failed_wf})
    assert response.status_code == 200
    assert shape(frames)[-1] == ("error", "fetch said no")


def test_execute_stream_with_the_same_idempotency_key_streams_the_first_run(stack: Stack):
    headers = {**HEADERS, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"workflowId": stack.completed_wf}
    _, first = read_stream(stack.http, "POST", stack.url(f"{RUNS}/execute/stream"), headers=headers, json=body)
    _, again = read_stream(stack.http, "POST", stack.url(f"{RUNS}/execute/stream"), headers=headers, json=body)
    assert events_of(first)[0].content["workflowRunId"] == events_of(again)[0].content["workflowRunId"]
    assert [f.id for f in events_of(first)] == [f.id for f in events_of(again)]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"workflowId": "not-a-uuid"}, 400, "ValidationError"),
        ({"workflowId": str(uuid.uuid4())}, 404, "NotFound"),
        ({"workflowId": "{wf}", "inputs": {"nope": 1}}, 400, "ValidationError"),
        ({"workflowId": "{wf}", "extra": 1}, 400, "ValidationError"),
    ],
    ids=["bad-uuid", "unknown-workflow", "unknown-input", "unknown-field"],
)
def test_execute_stream_rejects_a_bad_request_as_json_before_any_stream(stack: Stack, body, status, code):
    body = {k: (v.format(wf=stack.completed_wf) if isinstance(v, str) else v) for k, v in body.items()}
    response = stack.http.post(stack.url(f"{RUNS}/execute/stream"), headers=HEADERS, json=body)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["success"] is False and response.json()["error"] == code


def test_execute_stream_without_credentials_is_unauthorized(stack: Stack):
    public = create_app(settings=stack.settings, service=stack.service)  # not the internal listener
    with ServerThread(public) as server:
        response = httpx.post(f"{server.url}{RUNS}/execute/stream", json={"workflowId": stack.completed_wf})
    assert response.status_code == 401 and response.json()["error"] == "Unauthorized"



class StartFails:
    """The service, with the table failing as a run is created."""

    def __init__(self, service: RunService):
        self._service = service

    def start_run(self, *args, **kwargs):
        raise ConnectionError("the table is unreachable")

    def __getattr__(self, name: str):
        return getattr(self._service, name)


def test_execute_stream_whose_run_cannot_be_started_streams_one_error_with_string_details(stack: Stack):
    app = create_app(settings=stack.settings, service=StartFails(stack.service), internal_listener=True)
    with ServerThread(app) as server:
        response, frames = read_stream(stack.http, "POST", f"{server.url}{RUNS}/execute/stream", headers=HEADERS,
                                       json={"workflowId": stack.completed_wf})
    assert response.status_code == 200
    [closing] = events_of(frames)
    assert closing.event == "error" and closing.data["error"] == "the run could not be started"
    assert isinstance(closing.data["details"], str) and "unreachable" not in closing.data["details"]
    assert closing.id == "0"

# ------------------------------------------------------------------ GET events: errors before the stream


def test_events_of_a_bad_run_id_is_a_validation_error(stack: Stack):
    response = stack.http.get(stack.url(f"{RUNS}/not-a-uuid/events"), headers=HEADERS)
    assert response.status_code == 400 and response.json()["error"] == "ValidationError"


def test_events_of_another_tenants_run_and_of_an_unknown_run_are_not_found(stack: Stack):
    run_id = stack.new_run(stack.completed_wf, script_completed)
    for path, tenant in ((run_id, OTHER_TENANT), (str(uuid.uuid4()), TENANT)):
        response = stack.http.get(stack.url(f"{RUNS}/{path}/events"), headers={"X-Tenant-Id": tenant})
        assert response.status_code == 404 and response.json()["error"] == "NotFound"


@pytest.mark.parametrize("where", ["header", "query"])
def test_events_after_a_cursor_that_is_not_ours_is_a_validation_error(stack: Stack, where: str):
    run_id = stack.new_run(stack.completed_wf)
    kwargs = {"headers": {**HEADERS, "Last-Event-ID": "12"}} if where == "header" else {"params": {"after": "x"}}
    response = stack.http.get(stack.url(f"{RUNS}/{run_id}/events"), **({"headers": HEADERS} | kwargs))
    assert response.status_code == 400 and response.json()["error"] == "ValidationError"


# ------------------------------------------------------------------ resume and replay


def test_resume_after_every_event_delivers_exactly_the_rest(stack: Stack):
    run_id = stack.new_run(stack.thinking_wf, script_thinking)
    stack.projected()
    _, frames = stack.events(run_id)
    full = [(f.id, f.event, f.data) for f in events_of(frames)]
    assert len(full) == 9

    for k, (cursor, _, _) in enumerate(full):
        _, by_header = stack.events(run_id, headers={"Last-Event-ID": cursor})
        _, by_query = stack.events(run_id, params={"after": cursor})
        assert [(f.id, f.event, f.data) for f in events_of(by_header)] == full[k + 1:], f"after event {k}"
        assert [(f.id, f.event, f.data) for f in events_of(by_query)] == full[k + 1:], f"after event {k}"


def test_resume_takes_the_later_of_header_and_query(stack: Stack):
    run_id = stack.new_run(stack.completed_wf, script_completed)
    stack.projected()
    _, frames = stack.events(run_id)
    ids = [f.id for f in events_of(frames)]

    _, resumed = stack.events(run_id, headers={"Last-Event-ID": ids[4]}, params={"after": ids[1]})

    assert [f.id for f in events_of(resumed)] == ids[5:]


def test_replay_after_completion_is_identical_every_time(stack: Stack):
    run_id = stack.new_run(stack.completed_wf, script_completed)
    stack.projected()
    _, first = stack.events(run_id)
    _, second = stack.events(run_id)
    assert shape(first) == EXPECTED_COMPLETED
    assert [(f.id, f.data) for f in events_of(first)] == [(f.id, f.data) for f in events_of(second)]


def test_stream_followed_while_the_run_goes_matches_the_replay(stack: Stack):
    run_id = stack.new_run(stack.completed_wf)
    writer = RunWriter(stack.store, run_id, pause=0.1)
    player = threading.Thread(target=script_completed, args=(writer,))
    player.start()
    try:
        _, live = stack.events(run_id)
    finally:
        player.join(10)
    _, replay = stack.events(run_id)
    assert shape(live) == EXPECTED_COMPLETED
    assert [(f.id, f.data) for f in events_of(live)] == [(f.id, f.data) for f in events_of(replay)]


# ------------------------------------------------------------------ load, pings, disconnects


def test_fifty_concurrent_streams_each_get_the_whole_run_once(stack: Stack):
    run_id = stack.new_run(stack.completed_wf)

    async def one(client: httpx.AsyncClient) -> list[tuple]:
        frames: list = []
        async with client.stream("GET", stack.url(f"{RUNS}/{run_id}/events"), headers=HEADERS) as response:
            assert response.status_code == 200
            lines = [line async for line in response.aiter_lines()]
        frames = list(parse_frames(lines))
        return [(f.id, f.event) for f in events_of(frames)]

    async def everyone() -> list[list[tuple]]:
        limits = httpx.Limits(max_connections=60, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=READ_TIMEOUT, limits=limits) as client:
            readers = [asyncio.create_task(one(client)) for _ in range(50)]
            await asyncio.sleep(0.2)  # every reader is waiting on a live run
            await asyncio.to_thread(script_completed, RunWriter(stack.store, run_id, pause=0.05))
            return await asyncio.gather(*readers)

    results = asyncio.run(everyone())

    assert len(results) == 50
    expected = results[0]
    assert [e for _, e in expected] == [s[0] for s in EXPECTED_COMPLETED]
    assert all(r == expected for r in results)


def test_pings_arrive_at_the_configured_interval_without_ids(stack: Stack):
    run_id = stack.new_run(stack.hanging_wf, script_hangs)
    arrivals: list[float] = []

    def three_pings(frames: list) -> bool:
        if frames[-1].event == "ping":
            arrivals.append(time.monotonic())
        return len(arrivals) == 3

    _, frames = stack.events(run_id, until=three_pings)

    pings = [f for f in frames if f.event == "ping"]
    assert len(pings) == 3
    assert all(p.data == {"content": "ping"} and p.id is None for p in pings)
    # Never more often than configured (a lower bound: a slow machine only spaces them more).
    assert all(b - a >= PING_SECONDS * 0.9 for a, b in itertools.pairwise(arrivals))


def test_ping_interval_defaults_to_nine_seconds():
    settings = Settings(runs_table="runs", events_table="events")
    assert settings.sse_ping_seconds == 9.0
    app = create_app(settings=settings)
    request = Request({"type": "http", "app": app, "headers": []})

    async def nothing():
        return
        yield  # pragma: no cover

    response = event_stream(request, settings, nothing())
    assert response.ping_interval == 9.0


def test_client_going_away_stops_the_polls_of_its_stream(stack: Stack):
    run_id = stack.new_run(stack.hanging_wf, script_hangs)
    stack.projected()

    _, frames = stack.events(run_id, until=lambda fs: len(events_of(fs)) == 3)  # then hang up

    assert len(events_of(frames)) == 3
    wait_for(lambda: stack.app.state.open_streams == 0, timeout=5)
    polls = stack.log.polls[run_id]
    time.sleep(5 * stack.settings.sse_poll_max_seconds)  # several idle poll periods
    assert stack.log.polls[run_id] == polls


@pytest.mark.parametrize("where", ["header", "query"])
def test_resume_at_the_closing_event_answers_no_content(stack: Stack, where: str):
    # API.md "SSE lifetimes": a 204 is what makes a browser's EventSource stop reconnecting.
    run_id = stack.new_run(stack.failed_wf, script_failed)
    stack.projected()
    _, frames = stack.events(run_id)
    closing = events_of(frames)[-1]
    assert is_closing(closing.id)

    kwargs = {"headers": {"Last-Event-ID": closing.id}} if where == "header" else {"params": {"after": closing.id}}
    response, after = stack.events(run_id, **kwargs)

    assert response.status_code == 204 and response.content == b"" and after == []


def test_a_terminal_run_whose_closing_event_is_gone_ends_with_the_closing_event_told_from_its_status(stack: Stack):
    # Given a completed run whose event log has expired (written straight to the table,
    # bypassing the stream: its events never reach the log)
    run_id = stack.new_run(stack.completed_wf, script_completed)
    stack.projected()
    stack.store.client.delete_item(  # what the TTL does after event_ttl_days
        TableName=stack.settings.events_table,
        Key={"PK": {"S": f"RUN#{run_id}"}, "SK": {"S": _closing_cursor(stack, run_id)}},
    )
    stack.store.client.update_item(  # … which is days after the run ended
        TableName=stack.settings.runs_table, Key={"PK": {"S": f"RUN#{run_id}"}, "SK": {"S": "R"}},
        UpdateExpression="SET updatedAt = :long_ago", ExpressionAttributeValues={":long_ago": {"S": "2026-01-01T00:00:00.000Z"}},
    )
    _, frames = stack.events(run_id)

    # Then the stream still ends, with the closing event the projector would have written,
    # told from the run's status (docs/api.md: a reader whose log lags ends from the status)
    closing = events_of(frames)[-1]
    assert closing.event == "result"
    assert closing.data["workflowRun"]["id"] == run_id and closing.data["workflowRun"]["status"] == "completed"
    assert is_closing(closing.id) and closing.id > events_of(frames)[-2].id  # after every event it had


def _closing_cursor(stack: Stack, run_id: str) -> str:
    return next(c for c, _, _ in stack.store.events_after(run_id, None) if is_closing(c))


def _cancel(run_ids: list[str]) -> CancelRequest:
    return CancelRequest(run_ids=run_ids)



# ------------------------------------------------------------------ lifetimes (API.md "SSE lifetimes")


def _first_line(client: httpx.Client, method: str, url: str, **kwargs) -> tuple[httpx.Response, str]:
    with client.stream(method, url, **kwargs) as response:
        return response, next(response.iter_lines())


def test_every_stream_begins_with_its_retry_line(stack: Stack):
    finished = stack.new_run(stack.completed_wf, script_completed)
    hanging = stack.new_run(stack.hanging_wf)  # no event yet: the first frame will be a ping
    stack.projected()
    custom = create_app(settings=stack.settings.model_copy(update={"sse_retry_ms": 1234}), service=stack.service,
                        internal_listener=True)

    _, replay = _first_line(stack.http, "GET", stack.url(f"{RUNS}/{finished}/events"), headers=HEADERS)
    _, live = _first_line(stack.http, "POST", stack.url(f"{RUNS}/execute/stream"), headers=HEADERS,
                          json={"workflowId": stack.completed_wf})
    _, idle = _first_line(stack.http, "GET", stack.url(f"{RUNS}/{hanging}/events"), headers=HEADERS)
    with ServerThread(custom) as server:
        _, configured = _first_line(stack.http, "GET", f"{server.url}{RUNS}/{finished}/events", headers=HEADERS)

    assert replay == live == idle == "retry: 3000"
    assert configured == "retry: 1234"


def test_a_stream_at_its_longest_life_ends_without_a_closing_event_and_resumes(stack: Stack):
    # Given streams that live at most 0.6 s, and a run that is still going
    short = create_app(settings=stack.settings.model_copy(update={"stream_max_seconds": 0.6}), service=stack.service,
                       internal_listener=True)
    run_id = stack.new_run(stack.completed_wf)
    writer = RunWriter(stack.store, run_id)
    writer.status(Status.RUNNING)
    stack.projected()
    with ServerThread(short) as server:
        url = f"{server.url}{RUNS}/{run_id}/events"
        started = time.monotonic()
        response, first = read_stream(stack.http, "GET", url, headers=HEADERS)
        lasted = time.monotonic() - started

        # Then it ended on its own, with no result or error, after its longest life
        assert response.status_code == 200
        assert [f.event for f in events_of(first)] == ["workflow-run", "workflow-run"]
        assert 0.5 <= lasted < 5

        # When the run ends and the client resumes from the last event it got
        for step in ("fetch", "summarise"):
            writer.end_step(writer.start_step(step), Status.COMPLETED, {"step": step})
        writer.status(Status.COMPLETED)
        stack.projected()
        _, rest = read_stream(stack.http, "GET", url, headers={**HEADERS, "Last-Event-ID": events_of(first)[-1].id})

    # Then the two streams together are the whole run, once
    assert shape(first + rest) == EXPECTED_COMPLETED


def test_a_tenants_streams_are_capped_with_429_and_a_slot_comes_back_when_a_stream_ends(stack: Stack):
    # Given a cap of two streams per tenant, and a tenant of its own
    emitted: list[str] = []
    capped = create_app(settings=stack.settings.model_copy(update={"stream_max_per_tenant": 2}), service=stack.service,
                        internal_listener=True, telemetry=StreamTelemetry(emitted.append))
    tenant = f"capped-{uuid.uuid4().hex[:8]}"
    headers = {"X-Tenant-Id": tenant}
    wf = str(uuid.uuid4())
    stack.store.put_workflow(tenant, wf, workflow(TWO_STEPS, name="Hangs"))
    run_id = str(uuid.uuid4())
    stack.store.create_run(NewRun(run_id=run_id, tenant=tenant, workflow=stack.store.get_workflow(tenant, wf),
                                  inputs=[]))
    with ServerThread(capped) as server, httpx.Client(timeout=READ_TIMEOUT) as other:
        url = f"{server.url}{RUNS}/{run_id}/events"
        with stack.http.stream("GET", url, headers=headers) as one, other.stream("GET", url, headers=headers) as two:
            assert one.status_code == two.status_code == 200
            # When a third stream opens
            refused = httpx.get(url, headers=headers)
            refused_execute = httpx.post(f"{server.url}{RUNS}/execute/stream", headers=headers, json={"workflowId": wf})
            # … another tenant is not affected
            elsewhere = stack.store.create_run(NewRun(run_id=str(uuid.uuid4()), tenant=TENANT,
                                                      workflow=stack.store.get_workflow(TENANT, stack.completed_wf),
                                                      inputs=[]))[0]
            _, first = _first_line(stack.http, "GET", f"{server.url}{RUNS}/{elsewhere.id}/events", headers=HEADERS)
        # Then it is refused before any stream, in the uniform error body, with Retry-After
        for response in (refused, refused_execute):
            assert response.status_code == 429
            assert response.json() == {"success": False, "error": "TooManyRequests", "details": response.json()["details"]}
            assert int(response.headers["Retry-After"]) > 0
        assert first.startswith("retry:")
        # … and the refused execute started no run
        assert stack.store.list_runs(tenant, limit=10).total == 1
        # … and when the first two have ended, their slots are free again
        wait_for(lambda: stack.store.open_streams(tenant) == 0, timeout=5)
        response, _ = _first_line(stack.http, "GET", url, headers=headers)
        assert response.status_code == 200

    metrics = [json.loads(line) for line in emitted]
    names = [(m["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], m["service"]) for m in metrics]
    assert names.count(("StreamsRefused", "stream")) == 2
    opened = [m["OpenStreams"] for m in metrics if "OpenStreams" in m]  # EMF: a list of values per line
    assert opened[:2] == [[1.0], [2.0]] and all(m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "WorkflowRuns"
                                        for m in metrics)


def test_routes_answer_other_methods_and_paths_with_the_uniform_error(stack: Stack):
    run_id = stack.new_run(stack.completed_wf, script_completed)
    cases = [("HEAD", f"{RUNS}/{run_id}/events", 405), ("POST", f"{RUNS}/{run_id}/events", 405),
             ("GET", f"{RUNS}/execute/stream", 405), ("GET", f"{RUNS}/{run_id}/nothing", 404)]
    for method, path, status in cases:
        response = stack.http.request(method, stack.url(path), headers=HEADERS)
        assert response.status_code == status, (method, path)
        if method != "HEAD":
            assert response.json()["success"] is False
            assert response.json()["error"] == {404: "NotFound", 405: "MethodNotAllowed"}[status]
    assert stack.http.get(stack.url("/health")).json() == {"status": "ok"}


def test_header_rules_of_the_api_hold_on_the_stream_routes(stack: Stack):
    run_id = stack.new_run(stack.completed_wf)
    too_long = stack.http.get(stack.url(f"{RUNS}/{run_id}/events"), headers={**HEADERS, "Last-Event-ID": "1" * 65})
    bad_key = stack.http.post(stack.url(f"{RUNS}/execute/stream"), json={"workflowId": stack.completed_wf},
                              headers={**HEADERS, "Idempotency-Key": "no spaces allowed"})
    for response in (too_long, bad_key):
        assert response.status_code == 400 and response.json()["error"] == "ValidationError"
    assert too_long.json()["details"] == ["Last-Event-ID: String should have at most 64 characters"]
    assert bad_key.json()["details"] == ["idempotency-key: String should match pattern '^[A-Za-z0-9._:-]{1,128}$'"]


def test_a_request_refused_before_its_stream_keeps_no_stream_slot(stack: Stack):
    tenant = f"refused-{uuid.uuid4().hex[:8]}"
    headers = {"X-Tenant-Id": tenant}
    unknown_workflow = stack.http.post(stack.url(f"{RUNS}/execute/stream"), headers=headers,
                                       json={"workflowId": str(uuid.uuid4())})
    assert unknown_workflow.status_code == 404
    assert stack.store.open_streams(tenant) == 0
