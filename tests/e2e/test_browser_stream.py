"""Live runs end to end on the local runtime (the real step runner, orchestrator, stream
poller and projector), read by a real browser and by httpx.

The browser test: headless Chromium loads a page served on the same origin as the SSE app;
its JavaScript POSTs a FormData to execute/stream and reads the events through fetch() and
a ReadableStream reader, noting when each one arrived. The workflow waits 1 s in its middle,
so a stream that really streams delivers its first events at least that long before the
closing one; a buffered response would deliver them all at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from workflow_runs.models import WorkflowDefinition
from workflow_runs_dev.dynamodb_local import free_port
from workflow_runs_dev.runtime import DEV_TENANT, LocalRuntime
from workflow_runs_stream.app import create_app

from tests.e2e.browser import ReportingPage, dump_dom
from tests.integration.sse_helpers import RUNS, ServerThread, events_of, read_stream

WAIT_SECONDS = 1
WAITING = {
    "name": "Wait in the middle",
    "steps": [
        {"id": "first", "type": "transform", "config": {"output": "ready"}},
        {"id": "pause", "type": "wait", "config": {"seconds": WAIT_SECONDS}},
        {"id": "think", "type": "llm", "config": {"prompt": "Say hello"}},
    ],
}
LONG_WAIT = {"name": "Waits long", "steps": [{"id": "pause", "type": "wait", "config": {"seconds": 60}}]}


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    env = {"SSE_POLL_MAX_SECONDS": "0.2", "SSE_PING_SECONDS": "9"}
    rt = LocalRuntime(port=free_port(), internal_port=free_port(), dynamodb="moto", env=env)
    rt.start()
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def waiting_workflow(runtime: LocalRuntime) -> str:
    workflow_id = str(uuid.uuid4())
    runtime.service.put_workflow(DEV_TENANT, workflow_id, WorkflowDefinition.model_validate(WAITING))
    return workflow_id


# ------------------------------------------------------------------ a real browser

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>live run</title></head>
<body>
<pre id="out">running</pre>
<img src="/hold" alt="">
<script>
// Reads execute/stream the way a web client does: fetch + a ReadableStream reader.
(async () => {
  const started = performance.now();
  const events = [];
  let reads = 0;
  try {
    const form = new FormData();
    form.append("workflowId", "__WORKFLOW_ID__");
    form.append("inputs", JSON.stringify({}));
    const response = await fetch("/api/v1/workflow-runs/execute/stream", {
      method: "POST", body: form, headers: {"X-Tenant-Id": "__TENANT__"},
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      reads += 1;
      buffer += value.replace(/\\r\\n?/g, "\\n");
      let end;
      while ((end = buffer.indexOf("\\n\\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = {name: "message", id: null, data: "", read: reads, at: performance.now() - started};
        for (const line of block.split("\\n")) {
          const colon = line.indexOf(":");
          const field = line.slice(0, colon), text = line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event.name = text;
          else if (field === "id") event.id = text;
          else if (field === "data") event.data += text;
        }
        event.data = event.data ? JSON.parse(event.data) : null;
        events.push(event);
      }
    }
    document.getElementById("out").textContent = JSON.stringify(events);
  } catch (error) {
    document.getElementById("out").textContent = "failed: " + error;
  }
  await fetch("/report", {method: "POST", headers: {"Content-Type": "application/json"},
                          body: JSON.stringify({events, reads, error: null})});
})();
</script>
</body></html>
"""


class BrowserPage(ReportingPage):
    """The page that reads a run's stream through fetch(), on the SSE app's origin."""

    def __init__(self, workflow_id: str):
        super().__init__(PAGE.replace("__WORKFLOW_ID__", workflow_id).replace("__TENANT__", DEV_TENANT))

    def app(self, stream_app: Any) -> Starlette:
        return Starlette(routes=[*self.routes(), Mount("/", app=stream_app)])  # the SSE app: same origin


@pytest.mark.browser
def test_browser_receives_events_one_by_one_before_the_run_ends(runtime: LocalRuntime, waiting_workflow: str):
    # Given the SSE app (wired to the runtime's service) and the page on one origin
    page = BrowserPage(waiting_workflow)
    stream_app = create_app(settings=runtime.settings, service=runtime.service, internal_listener=True)
    with ServerThread(page.app(stream_app)) as server:
        # When headless Chromium loads the page and its script reads the whole stream
        done = dump_dom(f"{server.url}/page")
    assert page.report is not None, f"the page reported nothing; chromium said:\n{done.stderr[-2000:]}"

    # Then every event arrived, in order, ending with the result
    events = page.report["events"]
    names = [e["name"] for e in events if e["name"] != "ping"]
    assert names[0] == "workflow-run" and events[0]["data"]["content"]["status"] == "scheduled"
    assert names[-1] == "result" and events[-1]["data"]["workflowRun"]["status"] == "completed"
    assert names.count("result") + names.count("error") == 1
    assert "thinking" in names
    assert all(e["id"] for e in events if e["name"] != "ping")
    # … one by one: over many reads, not as one buffered body
    assert page.report["reads"] >= 3
    # … and before the run ended: what happened before the wait was on screen at least
    # half the wait before the closing event arrived.
    waiting = next(e for e in events if e["name"] == "workflow-run" and e["data"]["content"]["status"] == "waiting")
    closing = events[-1]
    assert waiting["read"] < closing["read"]
    assert closing["at"] - waiting["at"] >= WAIT_SECONDS * 1000 / 2
    assert closing["at"] - events[0]["at"] >= WAIT_SECONDS * 1000 / 2


# ------------------------------------------------------------------ the runtime over HTTP (httpx)


def test_execute_stream_on_the_dev_server_runs_the_real_steps_in_order(runtime: LocalRuntime,
                                                                      waiting_workflow: str):
    headers = {"Authorization": f"Bearer {runtime.token}"}
    with httpx.Client(timeout=30) as client:
        response, frames = read_stream(client, "POST", f"{runtime.public_url}{RUNS}/execute/stream",
                                       headers=headers, files={"workflowId": (None, waiting_workflow)})
    assert response.status_code == 200
    events = events_of(frames)
    statuses = [(f.event, (f.content or {}).get("stepId"), (f.content or {}).get("status")) for f in events
                if f.event in ("workflow-run", "activity-run")]
    assert statuses[0] == ("workflow-run", None, "scheduled")
    # A step's end and the run's status change are one transaction: their records may come
    # in either order, so only membership is fixed; the closing event is always last.
    assert ("workflow-run", None, "waiting") in statuses
    assert ("workflow-run", None, "completed") in statuses[-2:]
    steps = [s for e, s, st in statuses if e == "activity-run" and st == "completed"]
    assert steps == ["first", "pause", "think"]
    thinking = [f for f in events if f.event == "thinking"]
    assert thinking and all(f.data["stepId"] == "think" for f in thinking)
    assert events[-1].event == "result" and events[-1].data["success"] is True
    assert [a["stepId"] for a in events[-1].data["workflowRun"]["activityRuns"]] == ["first", "pause", "think"]


def test_cancelling_a_waiting_run_closes_its_stream_with_an_error(runtime: LocalRuntime):
    workflow_id = str(uuid.uuid4())
    runtime.service.put_workflow(DEV_TENANT, workflow_id, WorkflowDefinition.model_validate(LONG_WAIT))
    headers = {"Authorization": f"Bearer {runtime.token}"}

    with httpx.Client(timeout=30, base_url=runtime.public_url, headers=headers) as client:
        def cancel_once_waiting(frames: list) -> bool:
            last = frames[-1]
            if last.event == "workflow-run" and last.content["status"] == "waiting":
                reply = client.post(f"{RUNS}/cancel", json={"runIds": [last.content["workflowRunId"]],
                                                            "reason": "enough"})
                assert reply.json()["results"][0]["status"] == "cancelled"
            return False

        _, frames = read_stream(client, "POST", f"{RUNS}/execute/stream", until=cancel_once_waiting,
                                json={"workflowId": workflow_id})

    events = events_of(frames)
    assert [(f.event, f.content["status"]) for f in events if f.event == "workflow-run"][-1] == (
        "workflow-run", "cancelled")
    closing = events[-1]
    assert closing.event == "error" and closing.data["details"]["status"] == "cancelled"
    assert [f.event for f in events].count("error") == 1


def test_events_of_a_finished_run_replay_through_the_dev_server(runtime: LocalRuntime, waiting_workflow: str):
    headers = {"Authorization": f"Bearer {runtime.token}"}
    with httpx.Client(timeout=30, base_url=runtime.public_url, headers=headers) as client:
        _, live = read_stream(client, "POST", f"{RUNS}/execute/stream", json={"workflowId": waiting_workflow})
        run_id = events_of(live)[0].content["workflowRunId"]
        _, replay = read_stream(client, "GET", f"{RUNS}/{run_id}/events")
        middle = events_of(live)[3].id
        _, resumed = read_stream(client, "GET", f"{RUNS}/{run_id}/events", headers={"Last-Event-ID": middle})
    assert [(f.id, f.event) for f in events_of(replay)] == [(f.id, f.event) for f in events_of(live)]
    assert [(f.id, f.event) for f in events_of(resumed)] == [(f.id, f.event) for f in events_of(live)[4:]]



# ------------------------------------------------------------------ a browser's own EventSource

EVENT_SOURCE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>events</title></head>
<body>
<img src="/hold" alt="">
<script>
// The browser's native EventSource, as a page would use it: no close() on `result`; the
// server's 204 on the reconnect is what must stop it.
const events = [];
const source = new EventSource("/api/v1/workflow-runs/__RUN_ID__/events");
for (const name of ["workflow-run", "activity-run", "thinking", "result", "error", "ping"]) {
  source.addEventListener(name, (e) => events.push({name, id: e.lastEventId, data: JSON.parse(e.data)}));
}
source.onerror = () => {
  if (source.readyState === EventSource.CLOSED) {  // given up: what a 204 does
    fetch("/report", {method: "POST", headers: {"Content-Type": "application/json"},
                      body: JSON.stringify({events, state: source.readyState})});
  }
};
</script>
</body></html>
"""


class LingeringPage(BrowserPage):
    """The page stays open (its `load` held) for `linger` seconds after it reported, so a
    browser that meant to reconnect again would have the time to."""

    linger = 10 * 0.2  # ten reconnect periods

    async def hold(self, request: Request) -> Response:
        await super().hold(request)
        await asyncio.sleep(self.linger)
        return Response(status_code=204)


class CountingRequests:
    """What reached the events route, seen from the server: (status, Last-Event-ID) each.
    The page cannot set headers on an EventSource, so the tenant is added here (the app
    stands for the internal listener)."""

    def __init__(self, app: Any, tenant: str):
        self.app, self.tenant = app, tenant.encode()
        self.seen: list[tuple[int, str | None]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/events"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        last = headers.get(b"last-event-id")
        scope = {**scope, "headers": [*scope["headers"], (b"x-tenant-id", self.tenant)]}
        index = len(self.seen)
        self.seen.append((0, last.decode() if last else None))

        async def noting(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.seen[index] = (message["status"], self.seen[index][1])
            await send(message)

        await self.app(scope, receive, noting)


@pytest.mark.browser
def test_a_browsers_event_source_gets_every_event_and_stops_after_the_result(runtime: LocalRuntime,
                                                                            waiting_workflow: str):
    from workflow_runs.service import ExecuteRequest

    # Given a live run, and the SSE app telling clients to reconnect after 200 ms
    run = runtime.service.start_run(DEV_TENANT, ExecuteRequest(workflow_id=waiting_workflow))
    settings = runtime.settings.model_copy(update={"sse_retry_ms": 200})
    counted = CountingRequests(create_app(settings=settings, service=runtime.service, internal_listener=True),
                               DEV_TENANT)
    page = LingeringPage(waiting_workflow)
    page.html = EVENT_SOURCE_PAGE.replace("__RUN_ID__", run.id)
    with ServerThread(page.app(counted)) as server:
        # When Chromium's EventSource follows the run
        done = dump_dom(f"{server.url}/page")
        seen = list(counted.seen)  # Chromium has run until ten reconnect periods after its report
    assert page.report is not None, f"the page reported nothing; chromium said:\n{done.stderr[-2000:]}"

    # Then every event of the run arrived, once, in order, ending with the result
    events = [e for e in page.report["events"] if e["name"] != "ping"]
    with httpx.Client(timeout=30) as client:
        _, replay = read_stream(client, "GET", f"{runtime.internal_url}{RUNS}/{run.id}/events",
                                headers={"X-Tenant-Id": DEV_TENANT})
    assert [(e["id"], e["name"]) for e in events] == [(f.id, f.event) for f in events_of(replay)]
    assert events[-1]["name"] == "result" and events[-1]["data"]["workflowRun"]["status"] == "completed"
    # … and after the result the browser asked once more (the reconnect every stream end
    # causes), was told 204, and stopped: no further request
    assert seen == [(200, None), (204, events[-1]["id"])]
    assert page.report["state"] == 2  # EventSource.CLOSED
