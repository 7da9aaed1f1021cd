"""`workflow-runs run | runs` in a real terminal (a pty) against `workflow-runs dev`: what a user
sees, when they see it, and the exit code a script would test."""

from __future__ import annotations

import json
import re
import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.browser import CuttableProxy
from tests.e2e.devserver import DevServer, dev_server
from tests.e2e.terminal import cli as terminal

WAIT_SECONDS = 2
LIVE = {
    "name": "Live in a terminal",
    "inputs": [{"name": "topic", "type": "string", "required": True}],
    "steps": [
        {"id": "gather", "type": "transform", "config": {"output": {"topic": "{{ inputs.topic }}"}}},
        {"id": "pause", "type": "wait", "config": {"seconds": WAIT_SECONDS}},
        {"id": "think", "type": "llm", "config": {"prompt": "Summarise {{ inputs.topic }}"}},
        {"id": "publish", "type": "transform", "config": {"output": {"published": "{{ inputs.topic }}"}}},
    ],
}
FAILING = {
    "name": "Fails in a terminal",
    "steps": [
        {"id": "check", "type": "transform", "config": {"output": "checked"}},
        {"id": "guard", "type": "fail", "config": {"message": "the guard said no"}},
    ],
}
LONG = {"name": "Waits a minute", "steps": [{"id": "pause", "type": "wait", "config": {"seconds": 60}}]}
TYPED = {
    "name": "Typed inputs",
    "inputs": [{"name": "count", "type": "integer", "required": True},
               {"name": "ratio", "type": "number", "required": False, "default": 1},
               {"name": "loud", "type": "boolean", "required": False, "default": False},
               {"name": "tags", "type": "array", "required": False, "default": []},
               {"name": "label", "type": "string", "required": False, "default": "none"}],
    "steps": [{"id": "echo", "type": "transform",
               "config": {"output": {"count": "{{ inputs.count }}", "ratio": "{{ inputs.ratio }}",
                                     "loud": "{{ inputs.loud }}", "tags": "{{ inputs.tags | length }}",
                                     "label": "{{ inputs.label }}"}}}],
}


EXECUTE_WAIT_SECONDS = 3  # the blocking execute's budget on this server (then 202)


@pytest.fixture(scope="module")
def server(dynamodb_local_endpoint: str) -> Iterator[DevServer]:
    with dev_server(env={"EXECUTE_WAIT_SECONDS": str(EXECUTE_WAIT_SECONDS)},
                    dynamodb_endpoint=dynamodb_local_endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def workflows(server: DevServer) -> dict[str, str]:
    return {name: server.put_workflow(definition)
            for name, definition in (("live", LIVE), ("failing", FAILING), ("long", LONG), ("typed", TYPED))}


def test_run_follow_shows_each_step_live_and_exits_0_when_completed(server: DevServer, workflows: dict[str, str]):
    with terminal(server.public, server.token, "run", workflows["live"], "--input", "topic=tides", "--follow") as t:
        code = t.wait(60)
    assert code == 0, t.output
    run_id = re.search(r"^run ([0-9a-f-]{36})$", t.output, re.MULTILINE).group(1)
    # a progress line per step change, each once, in order
    for step in ("gather", "pause", "think", "publish"):
        assert t.output.count(f"  step {step}: completed (attempt 1)") == 1, t.output
    order = [t.output.index(f"step {s}: completed") for s in ("gather", "pause", "think", "publish")]
    assert order == sorted(order)
    # the model's thinking text, streamed, under its step
    assert re.search(r"^  step think thinking:\n    \S", t.output, re.MULTILINE), t.output
    # the final outputs
    assert "finished: completed in " in t.output
    assert '  publish: {"published": "tides"}' in t.output
    # live: the first step's line was on screen while the run was still waiting
    assert t.seen_at("finished: completed") - t.seen_at("step gather: completed") >= WAIT_SECONDS * 0.75
    assert server.events(run_id)[-1][1] == "result"


def test_a_failed_run_exits_1_with_its_error(server: DevServer, workflows: dict[str, str]):
    with terminal(server.public, server.token, "run", workflows["failing"], "--follow") as t:
        code = t.wait(60)
    assert code == 1, t.output
    assert "error at step guard: the guard said no" in t.output
    assert "finished: failed" in t.output
    assert "outputs:" not in t.output


def test_a_cancelled_run_exits_3(server: DevServer, workflows: dict[str, str]):
    with terminal(server.public, server.token, "run", workflows["long"], "--follow") as follow:
        run_id = follow.expect(r"^run ([0-9a-f-]{36})$").group(1)
        follow.expect(r"^run waiting$")
        with terminal(server.public, server.token, "runs", "cancel", run_id, "--reason", "enough") as cancel:
            assert cancel.wait(30) == 0, cancel.output
        assert f"{run_id}  cancelled" in cancel.output
        code = follow.wait(30)
    assert code == 3, follow.output
    assert "finished: cancelled" in follow.output


def test_run_without_follow_exits_6_when_the_run_outlasts_the_blocking_execute(server: DevServer,
                                                                                workflows: dict[str, str]):
    with terminal(server.public, server.token, "run", workflows["long"]) as t:
        code = t.wait(30)
    assert code == 6, t.output
    run_id = re.search(r"^run ([0-9a-f-]{36})  waiting", t.output, re.MULTILINE).group(1)
    assert f"follow it with: workflow-runs runs get {run_id} --follow" in t.output
    with terminal(server.public, server.token, "runs", "cancel", run_id) as cancel:
        assert cancel.wait(30) == 0, cancel.output
    with terminal(server.public, server.token, "runs", "get", run_id, "--follow") as follow:
        assert follow.wait(30) == 3, follow.output  # it replays the run's events to its end
    assert "finished: cancelled" in follow.output


def test_a_dropped_stream_resumes_with_last_event_id_and_shows_nothing_twice(server: DevServer,
                                                                             workflows: dict[str, str]):
    with CuttableProxy(server.port) as proxy, \
            terminal(proxy.url, server.token, "run", workflows["live"], "--input", "topic=surf", "--follow") as t:
        t.expect(r"^run waiting$")
        assert proxy.cut() >= 1
        t.expect(r"resuming after event \S+")
        code = t.wait(60)
    assert code == 0, t.output
    # not one progress line twice (in this workflow each step reaches each status once, and the
    # run is waiting once; it is `running` before and after its wait)
    lines = [line for line in t.output.splitlines() if line.startswith("  step ")]
    assert len(lines) == len(set(lines)), t.output
    assert t.output.count("\nrun waiting\n") == 1 and t.output.count("\nrun running\n") == 2, t.output
    for step in ("gather", "pause", "think", "publish"):
        assert f"  step {step}: completed (attempt 1)" in lines
    assert '  publish: {"published": "surf"}' in t.output


def test_json_follow_prints_each_event_once_as_a_json_line(server: DevServer, workflows: dict[str, str]):
    with terminal(server.public, server.token, "run", workflows["live"], "--input", "topic=json", "--follow",
                  "--json") as t:
        code = t.wait(60)
    assert code == 0, t.output
    events = [json.loads(line) for line in t.output.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "result" and events[-1]["data"]["workflowRun"]["status"] == "completed"
    run_id = events[0]["data"]["content"]["workflowRunId"]
    assert [(e["id"], e["event"]) for e in events] == server.events(run_id)


def test_inputs_are_converted_to_their_declared_types(server: DevServer, workflows: dict[str, str],
                                                      tmp_path: Path):
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"count": 1, "tags": ["a", "b"], "label": "from the file"}))
    with terminal(server.public, server.token, "run", workflows["typed"], "--inputs-file", str(inputs),
                  "--input", "count=3", "--input", "ratio=0.5", "--input", "loud=yes", "--json") as t:
        code = t.wait(60)
    assert code == 0, t.output
    run = json.loads(t.output[t.output.index("{"):])["workflowRun"]
    assert {i["name"]: i["value"] for i in run["inputs"]} == {
        "count": 3, "ratio": 0.5, "loud": True, "tags": ["a", "b"], "label": "from the file"}

    with terminal(server.public, server.token, "run", workflows["typed"], "--input", "count=three") as t:
        assert t.wait(30) == 2
    assert "--input count: not a valid integer" in t.output


def test_runs_list_pages_with_next_token_and_get_shows_a_run(server: DevServer, workflows: dict[str, str]):
    for _ in range(3):
        with terminal(server.public, server.token, "run", workflows["failing"]) as t:
            assert t.wait(30) == 1, t.output
    with terminal(server.public, server.token, "runs", "list", "--workflow-id", workflows["failing"],
                  "--limit", "2") as t:
        assert t.wait(30) == 0, t.output
    first = re.findall(r"^([0-9a-f-]{36})  failed", t.output, re.MULTILINE)
    hint = re.search(r"^next page: (.+)$", t.output, re.MULTILINE).group(1)
    assert len(first) == 2
    # the hint is followed literally: it repeats the filters its token is bound to
    argv = shlex.split(hint)
    assert argv[:3] == ["workflow-runs", "runs", "list"] and workflows["failing"] in argv
    with terminal(server.public, server.token, *argv[1:], "--json") as t:
        assert t.wait(30) == 0, t.output
    page = json.loads(t.output)
    assert page["data"] and not {r["id"] for r in page["data"]} & set(first)

    with terminal(server.public, server.token, "runs", "get", first[0]) as t:
        assert t.wait(30) == 0, t.output
    assert f"run {first[0]}  failed  Fails in a terminal" in t.output
    assert "error: the guard said no (step guard)" in t.output


def test_errors_have_their_own_exit_codes(server: DevServer):
    with terminal(server.public, server.token, "runs", "get", str(uuid.uuid4())) as t:
        assert t.wait(30) == 4
    assert "404 NotFound" in t.output
    with terminal(server.public, "not-a-token", "runs", "list") as t:
        assert t.wait(30) == 4
    assert "401 Unauthorized" in t.output
    with terminal(server.public, server.token, "runs", "cancel") as t:
        assert t.wait(30) == 2
    with terminal("http://127.0.0.1:9", server.token, "runs", "list") as t:
        assert t.wait(30) == 5
    assert "cannot reach http://127.0.0.1:9" in t.output


def test_the_internal_listener_works_with_a_tenant_and_no_token(server: DevServer, workflows: dict[str, str]):
    with terminal(server.internal, None, "runs", "get", "--tenant", "dev", str(uuid.uuid4())) as t:
        assert t.wait(30) == 4
    assert "404 NotFound" in t.output  # authorised as tenant dev, the run is simply unknown
    with terminal(server.internal, None, "run", workflows["failing"], "--tenant", "dev", "--follow") as t:
        assert t.wait(30) == 1, t.output
    assert "error at step guard" in t.output
