"""The client CLI's pieces that need no server: input conversion, the SSE parser, and how
`--follow` resumes, against a scripted transport (httpx.MockTransport). The whole command
against `workflow-runs dev` in a terminal is tests/e2e/test_cli.py."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from workflow_runs_dev.client import (
    EXIT_COMPLETED,
    EXIT_FAILED,
    MAX_FAILED_RESUMES,
    Api,
    ApiError,
    Follower,
    Unreachable,
    UsageError,
    collect_inputs,
    parse_sse,
)

RUN_ID = "6f0120c9-a7aa-4a45-8a7c-7c43a07624b5"
WORKFLOW = {"inputs": [{"name": "count", "type": "integer"}, {"name": "ratio", "type": "number"},
                       {"name": "loud", "type": "boolean"}, {"name": "tags", "type": "array"},
                       {"name": "meta", "type": "object"}, {"name": "label", "type": "string"}]}


# ------------------------------------------------------------------ inputs


def test_inputs_take_their_declared_types():
    inputs = collect_inputs(WORKFLOW, ["count=3", "ratio=0.5", "loud=no", "tags=[1, 2]", 'meta={"a": 1}',
                                       "label=3", "other=x=y"], None)
    assert inputs == {"count": 3, "ratio": 0.5, "loud": False, "tags": [1, 2], "meta": {"a": 1}, "label": "3",
                      "other": "x=y"}


@pytest.mark.parametrize("pair", ["count=3.5", "ratio=many", "loud=maybe", "tags={}", "meta=[1]", "novalue"])
def test_an_input_that_is_not_of_its_type_is_a_usage_error(pair: str):
    with pytest.raises(UsageError):
        collect_inputs(WORKFLOW, [pair], None)


def test_the_inputs_file_comes_first_and_input_wins(tmp_path):
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps({"count": 1, "label": "file"}))
    assert collect_inputs(WORKFLOW, ["count=2"], str(path)) == {"count": 2, "label": "file"}
    path.write_text("[1]")
    with pytest.raises(UsageError, match="not a JSON object"):
        collect_inputs(WORKFLOW, [], str(path))


# ------------------------------------------------------------------ SSE


def test_sse_parser_reads_fields_multiline_data_comments_and_retry():
    retries: list[float] = []
    lines = [": a comment", "retry: 1500", "event: thinking", "id: 1", "data: {\"a\":", "data: 1}", "",
             "event: ping", "data: {}", "", "data: plain", ""]
    events = list(parse_sse(iter(lines), retries.append))
    assert [(e.name, e.id, e.data) for e in events] == [("thinking", "1", {"a": 1}), ("ping", None, {}),
                                                        ("message", None, "plain")]
    assert retries == [1.5]


# ------------------------------------------------------------------ following, resumed


def frame(name: str, event_id: str, data: dict[str, Any]) -> str:
    return f"event: {name}\nid: {event_id}\ndata: {json.dumps(data)}\n\n"


def run_event(event_id: str, status: str) -> str:
    return frame("workflow-run", event_id, {"content": {"workflowRunId": RUN_ID, "status": status}})


RESULT = frame("result", "~9", {"success": True, "workflowRun": {
    "id": RUN_ID, "status": "completed", "createdAt": "2026-12-02T10:00:00.000Z",
    "updatedAt": "2026-12-02T10:00:01.000Z",
    "activityRuns": [{"stepId": "only", "status": "completed", "attempt": 1, "outputs": {"x": 1},
                      "createdAt": "2026-12-02T10:00:00.000Z", "updatedAt": "2026-12-02T10:00:00.500Z"}]}})


class Script:
    """Answers each request with the next scripted reply; remembers what was asked."""

    def __init__(self, *replies: Any):
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def sse(*frames: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, text="retry: 0\n\n" + "".join(frames),
                          headers={"Content-Type": "text/event-stream"})


def follower(script: Script, out: io.StringIO | None = None, as_json: bool = False) -> Follower:
    api = Api("http://api.test", token="t", transport=httpx.MockTransport(script))
    return Follower(api, out or io.StringIO(), as_json=as_json, err=io.StringIO(), sleep=lambda seconds: None)


def test_a_stream_that_ends_early_is_resumed_after_its_last_event_and_nothing_shows_twice():
    script = Script(
        sse(run_event("1", "scheduled"), run_event("2", "running")),  # dropped: no closing event
        sse(run_event("2", "running"), run_event("3", "waiting")),   # a repeat is not shown again
        sse(RESULT),
    )
    out = io.StringIO()
    code = follower(script, out).follow(execute={"workflowId": "w", "inputs": {}}, idempotency_key="k")

    assert code == EXIT_COMPLETED
    first, second, third = script.requests
    assert first.method == "POST" and first.url.path.endswith("/execute/stream")
    assert first.headers["Idempotency-Key"] == "k" and first.headers["Authorization"] == "Bearer t"
    assert second.method == "GET" and second.url.path == f"/api/v1/workflow-runs/{RUN_ID}/events"
    assert second.headers["Last-Event-ID"] == "2"
    assert third.headers["Last-Event-ID"] == "3"
    text = out.getvalue()
    assert text.count("run running\n") == 1 and "run waiting\n" in text
    assert '  only: {"x": 1}' in text


def test_a_204_on_resume_means_the_run_ended_and_the_run_says_how():
    failed = {"workflowRun": {"id": RUN_ID, "status": "failed", "createdAt": "2026-12-02T10:00:00.000Z",
                              "updatedAt": "2026-12-02T10:00:01.000Z", "activityRuns": []}}
    script = Script(sse(run_event("1", "running")), httpx.Response(204), httpx.Response(200, json=failed))
    assert follower(script).follow(run_id=RUN_ID) == EXIT_FAILED
    assert [r.url.path for r in script.requests][-1] == f"/api/v1/workflow-runs/{RUN_ID}"


def test_busy_answers_are_retried_and_refusals_are_not():
    busy = httpx.Response(429, json={"success": False, "error": "TooManyRequests"}, headers={"Retry-After": "0"})
    script = Script(busy, httpx.Response(503, json={"error": "Unavailable"}), sse(RESULT))
    assert follower(script).follow(run_id=RUN_ID) == EXIT_COMPLETED
    assert len(script.requests) == 3

    refused = Script(httpx.Response(404, json={"success": False, "error": "NotFound", "details": "no such run"}))
    with pytest.raises(ApiError, match="404 NotFound: no such run"):
        follower(refused).follow(run_id=RUN_ID)
    assert len(refused.requests) == 1


def test_it_gives_up_after_too_many_failed_resumes_in_a_row():
    script = Script(httpx.ConnectError("refused"))
    with pytest.raises(Unreachable, match="gave up"):
        follower(script).follow(run_id=RUN_ID)
    assert len(script.requests) == MAX_FAILED_RESUMES + 1


def test_json_mode_prints_one_line_per_event():
    out = io.StringIO()
    script = Script(sse(run_event("1", "scheduled"), frame("ping", "", {}), RESULT))
    assert follower(script, out, as_json=True).follow(run_id=RUN_ID) == EXIT_COMPLETED
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["event"], line["id"]) for line in lines] == [("workflow-run", "1"), ("result", "~9")]
