"""A canary secret: a random `envs` value that workflows echo everywhere they can — transform
outputs, an llm prompt (and so its answer and thinking), an http step's URL, header and the
body its server answers, a fail step's message, an http error naming the URL. It must reach
the one place it is meant for (the http server) and appear nowhere else: not in any
response (execute, execute/stream, get, list, dashboard), not in any SSE event (each run's
whole event log), not in any log line this process wrote, and not in plain text in either
DynamoDB table (scanned here, in the test only)."""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from workflow_runs.models import WorkflowDefinition

from tests.integration.sse_helpers import read_stream

pytestmark = pytest.mark.dynamodb_local

RUNS = "/api/v1/workflow-runs"


class EchoServer:
    """A loopback HTTP server that records what it was sent and answers with the token it
    found (in its body and in a response header a step keeps): the worst case for masking."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append({"path": self.path, "headers": dict(self.headers)})
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                status = 404 if self.path.startswith("/missing") else 200
                body = json.dumps({"youSent": token, "path": self.path}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Request-Id", f"req-{token}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def workflows(base: str) -> dict[str, dict[str, Any]]:
    echo = {"id": "echo", "type": "transform",
            "config": {"output": {"plain": "{{ env.CANARY }}", "wrapped": "<{{ env.CANARY }}>",
                                  "json": "{{ {'k': env.CANARY} | tojson }}"}}}
    ask = {"id": "ask", "type": "llm", "config": {"prompt": "Repeat after me: {{ env.CANARY }}"}}
    call = {"id": "call", "type": "http",
            "config": {"url": f"{base}/hook?token={{{{ env.CANARY }}}}",
                       "headers": {"Authorization": "Bearer {{ env.CANARY }}"}}}
    return {
        "completes": {"name": "Canary completes", "steps": [echo, ask, call]},
        "fails": {"name": "Canary fails", "steps": [echo, {"id": "stop", "type": "fail",
                                                           "config": {"message": "refused {{ env.CANARY }}"}}]},
        "http_error": {"name": "Canary 404",
                       "steps": [{"id": "call", "type": "http",
                                  "config": {"url": f"{base}/missing/{{{{ env.CANARY }}}}",
                                             "headers": {"Authorization": "Bearer {{ env.CANARY }}"}}}]},
    }


def forms_of(canary: str) -> list[str]:
    """The canary as it could surface: as is, URL-encoded, JSON-escaped.

    Masking replaces the value (and its escaped forms); a template that transforms a secret
    (`| upper`, `| b64encode`, slicing) defeats any mask — the limit docs/reliability.md states."""
    return sorted({canary, urllib.parse.quote(canary, safe=""), json.dumps(canary)[1:-1]})


@pytest.mark.timeout(90)
def test_a_canary_secret_appears_in_no_response_event_log_or_table(dev_runtime: Any, echo_server: EchoServer,
                                                                   caplog: pytest.LogCaptureFixture,
                                                                   capfd: pytest.CaptureFixture[str]):
    caplog.set_level("DEBUG")  # every logger at its most talkative, botocore's request bodies included
    canary = secrets.token_urlsafe(24)  # 32 random characters no other text contains
    envs = json.dumps({"CANARY": canary, "OTHER": "not-secret-enough"})
    auth = {"Authorization": f"Bearer {dev_runtime.token}"}
    seen: list[tuple[str, str]] = []  # (where, text): everything the outside world got back

    # Given three workflows that echo the canary everywhere they can
    ids = {}
    for kind, definition in workflows(echo_server.base).items():
        ids[kind] = str(uuid.uuid4())
        dev_runtime.service.put_workflow("dev", ids[kind], WorkflowDefinition.model_validate(definition))

    run_ids: dict[str, str] = {}
    with httpx.Client(base_url=dev_runtime.public_url, headers=auth, timeout=httpx.Timeout(30.0)) as client:
        # When each runs: by blocking execute (multipart and JSON) and by execute/stream
        for kind in ("completes", "fails"):
            response = client.post(f"{RUNS}/execute", files={"workflowId": (None, ids[kind]), "envs": (None, envs)})
            seen.append((f"execute {kind}", response.text))
            assert response.status_code in (200, 202), response.text
            run_ids[kind] = response.json()["workflowRun"]["id"]
        response = client.post(f"{RUNS}/execute", json={"workflowId": ids["http_error"], "envs": json.loads(envs)})
        seen.append(("execute http_error", response.text))
        run_ids["http_error"] = response.json()["workflowRun"]["id"]
        _streamed, frames = read_stream(client, "POST", f"{RUNS}/execute/stream",
                                       files={"workflowId": (None, ids["completes"]), "envs": (None, envs)})
        seen.append(("execute/stream", "\n".join(json.dumps(f.data) for f in frames)))
        assert frames[-1].event == "result", frames[-1]
        run_ids["streamed"] = frames[0].data["content"]["workflowRunId"]

        # … and every run is read back: each one's whole event log, get, list, dashboard
        for kind, run_id in run_ids.items():
            _, frames = read_stream(client, "GET", f"{RUNS}/{run_id}/events")
            assert frames and frames[-1].event in ("result", "error"), (kind, frames)
            seen.append((f"events {kind}", "\n".join(f"{f.event} {f.id} {json.dumps(f.data)}" for f in frames)))
            response = client.get(f"{RUNS}/{run_id}")
            seen.append((f"get {kind}", response.text))
            assert response.json()["workflowRun"]["status"] in ("completed", "failed"), response.text
        for workflow_id in ids.values():
            seen.append(("list", client.get(RUNS, params={"workflowId": workflow_id, "limit": 100}).text))
            seen.append(("dashboard", client.get(f"{RUNS}/dashboard/{workflow_id}").text))
        seen.append(("list all", client.get(RUNS, params={"limit": 100}).text))
        seen.append(("search", client.get(RUNS, params={"search": "canary", "limit": 100}).text))

    # Then the runs really used the secret: it reached the one server meant to receive it …
    assert echo_server.requests and all(r["headers"]["Authorization"] == f"Bearer {canary}"
                                        for r in echo_server.requests)
    assert any(canary in r["path"] for r in echo_server.requests)
    final = {kind: dev_runtime.store.get_run("dev", run_id) for kind, run_id in run_ids.items()}
    assert {kind: run.status.value for kind, run in final.items()} == {
        "completes": "completed", "fails": "failed", "http_error": "failed", "streamed": "completed"}
    echoed = next(a for a in final["completes"].activity_runs if a.step_id == "echo").outputs
    assert echoed["plain"] == "***" and echoed["wrapped"] == "<***>"  # masked, not dropped
    assert "***" in final["fails"].error.message

    # … and it surfaced nowhere else: no response, no event, no log line
    leaks = [(where, form) for where, text in seen for form in forms_of(canary) if form in text]
    assert leaks == []
    assert "not-secret-enough" not in "".join(text for _, text in seen)  # envs are never returned at all
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert caplog.records, "nothing was logged: the log check would prove nothing"
    leaked_lines = [line for line in logged.splitlines() if any(form in line for form in forms_of(canary))]
    assert leaked_lines == []

    # … nor in plain text in either table (a Scan is fine in a test)
    client = dev_runtime.store.client
    for table in (dev_runtime.settings.runs_table, dev_runtime.settings.events_table):
        items = []
        for page in client.get_paginator("scan").paginate(TableName=table):
            items += page["Items"]
        text = json.dumps(items)
        assert run_ids["completes"] in text  # the scan saw the runs
        assert [form for form in forms_of(canary) if form in text] == [], table
        assert "not-secret-enough" not in text, table



def test_an_http_steps_request_url_with_a_secret_is_not_logged(echo_server: EchoServer,
                                                               caplog: pytest.LogCaptureFixture):
    from workflow_runs.models import Retry, Step
    from workflow_runs.settings import Settings
    from workflow_runs_step_runner.steps.base import StepContext
    from workflow_runs_step_runner.steps.http import HttpStep

    # Given an http step whose URL carries a secret, logging at INFO (Lambda's JSON log level)
    caplog.set_level("INFO")
    canary = secrets.token_urlsafe(24)
    step = Step(id="call", type="http", retry=Retry(),
                config={"url": f"{echo_server.base}/hook?token={{{{ env.CANARY }}}}"})
    ctx = StepContext(run_id=str(uuid.uuid4()), activity_run_id=str(uuid.uuid4()), step=step, attempt=1,
                      inputs={}, steps={}, env={"CANARY": canary},
                      settings=Settings(runs_table="runs", events_table="events",
                                        http_step_allowed_hosts=("127.0.0.1",)))

    # When it runs
    HttpStep().run(ctx)

    # Then the secret reached the server, and no log line
    assert canary in echo_server.requests[0]["path"]
    assert [r.getMessage() for r in caplog.records if canary in r.getMessage()] == []
