"""CORS as a browser enforces it: headless Chromium loads a page from one loopback origin
that calls `workflow-runs dev --cors-origin <that origin>` on another port — a multipart
blocking execute, a list, and a fetch()-streamed execute/stream, each with an
`Authorization: Bearer` header (so each is preflighted). A page from an origin not listed
is refused by the browser."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from workflow_runs_dev.dynamodb_local import free_port

from tests.e2e.browser import ReportingPage, dump_dom
from tests.e2e.devserver import THREE_STEP, DevServer, dev_server
from tests.integration.sse_helpers import ServerThread

RUNS = "/api/v1/workflow-runs"

SCRIPT = """
const API = "__API__", AUTH = {"Authorization": "Bearer __TOKEN__"};
const report = {};
async function step(name, work) {
  try { report[name] = await work(); } catch (error) { report[name] = {failed: String(error)}; }
}
(async () => {
  await step("execute", async () => {
    const form = new FormData();
    form.append("workflowId", "__WORKFLOW_ID__");
    form.append("inputs", "{}");
    const response = await fetch(API + "/api/v1/workflow-runs/execute", {method: "POST", body: form, headers: AUTH});
    const body = await response.json();
    return {status: response.status, runStatus: body.workflowRun.status, runId: body.workflowRun.id};
  });
  await step("list", async () => {
    const response = await fetch(API + "/api/v1/workflow-runs?limit=5", {headers: AUTH});
    const body = await response.json();
    return {status: response.status, ids: body.data.map(run => run.id)};
  });
  await step("stream", async () => {
    const form = new FormData();
    form.append("workflowId", "__WORKFLOW_ID__");
    const response = await fetch(API + "/api/v1/workflow-runs/execute/stream",
                                 {method: "POST", body: form, headers: AUTH});
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    for (;;) { const {value, done} = await reader.read(); if (done) break; text += value; }
    const names = [...text.matchAll(/^event: ?(.*)$/gm)].map(m => m[1].trim());
    return {status: response.status, contentType: response.headers.get("content-type"), names};
  });
  await fetch("/report", {method: "POST", headers: {"Content-Type": "application/json"},
                          body: JSON.stringify(report)});
})();
"""


class PageSite(ReportingPage):
    """A page on its own origin, with the script under test."""

    def __init__(self, script: str):
        super().__init__(f'<!doctype html><html><body><img src="/hold" alt=""><script>{script}</script></body></html>')

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())


@pytest.fixture(scope="module")
def page_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def cors_dev_server(page_port: int) -> Iterator[DevServer]:
    with dev_server("--dynamodb", "moto", "--cors-origin", f"http://127.0.0.1:{page_port}",
                    "--cors-origin", "http://localhost:5173", env={"CORS_ALLOW_ORIGINS": ""}, examples=True) as server:
        yield server


def _site(server: DevServer) -> PageSite:
    script = (SCRIPT.replace("__API__", server.public).replace("__TOKEN__", server.token or "")
              .replace("__WORKFLOW_ID__", THREE_STEP))
    return PageSite(script)


@pytest.mark.browser
def test_a_page_of_a_listed_origin_executes_lists_and_streams_across_origins(cors_dev_server: DevServer,
                                                                             page_port: int):
    assert f"http://127.0.0.1:{page_port}" in cors_dev_server.banner  # the banner names the origins
    site = _site(cors_dev_server)
    server = ServerThread(site.app())
    server.port = page_port  # the listed origin
    server.server.config.port = page_port
    with server:
        done = dump_dom(f"http://127.0.0.1:{page_port}/page", timeout=90)
    report = site.report
    assert report is not None, f"the page reported nothing; chromium said:\n{done.stderr[-2000:]}"
    # The blocking multipart execute answered with the completed run
    assert report["execute"] == {"status": 200, "runStatus": "completed", "runId": report["execute"]["runId"]}, report
    # The list (a GET with Authorization) was readable, and holds that run
    assert report["list"]["status"] == 200 and report["execute"]["runId"] in report["list"]["ids"], report
    # The stream was read through fetch(), every event to the closing one
    stream = report["stream"]
    assert stream["status"] == 200 and stream["contentType"].startswith("text/event-stream"), report
    names = [n for n in stream["names"] if n != "ping"]
    assert names[0] == "workflow-run" and names[-1] == "result" and "activity-run" in names, report


@pytest.mark.browser
def test_a_page_of_an_unlisted_origin_is_refused_by_the_browser(cors_dev_server: DevServer):
    site = _site(cors_dev_server)
    with ServerThread(site.app()) as server:  # a port that is not listed
        done = dump_dom(f"{server.url}/page", timeout=90)
    report = site.report
    assert report is not None, f"the page reported nothing; chromium said:\n{done.stderr[-2000:]}"
    for name in ("execute", "list", "stream"):
        assert "failed" in report[name] and "TypeError" in report[name]["failed"], json.dumps(report)
