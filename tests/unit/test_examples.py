"""Every workflow in examples/ is a valid definition, and the offline ones really run.

The runs here drive the step types one after another (no orchestrator, no store): enough to
prove each example's templates reach the variables they name.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from workflow_runs.models import WorkflowDefinition, resolve_inputs
from workflow_runs.settings import Settings
from workflow_runs_step_runner.steps import registry
from workflow_runs_step_runner.steps.base import StepContext, StepError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def definition(path: Path) -> WorkflowDefinition:
    body = dict(load(path))
    body.pop("id")
    return WorkflowDefinition.model_validate(body)


def run_example(name: str, inputs: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """Run each step in order; stop at the first StepError. Returns what happened."""
    workflow = definition(EXAMPLES / f"{name}.yaml")
    resolved = {i.name: i.value for i in resolve_inputs(workflow, inputs)}
    done: dict[str, dict[str, Any]] = {}
    thinking: list[str] = []
    waits: list[int] = []
    for step in workflow.steps:
        ctx = StepContext(
            run_id=str(uuid.uuid4()), activity_run_id=str(uuid.uuid4()), step=step, attempt=1,
            inputs=resolved, steps=done, env={},
            settings=Settings(runs_table="runs", events_table="events", **settings),
            emit_thinking=thinking.append)
        try:
            outcome = registry.get(step.type).run(ctx)
        except StepError as exc:
            return {"steps": done, "error": {"stepId": step.id, "message": exc.message}, "thinking": thinking}
        if outcome.wait_seconds is not None:
            waits.append(outcome.wait_seconds)
        done[step.id] = {"outputs": outcome.outputs}
    return {"steps": done, "error": None, "thinking": thinking, "waits": waits}


def test_there_are_examples():
    assert {p.stem for p in FILES} >= {
        "summarise-echo", "three-step-transform", "wait-then-finish", "guarded-fail", "fetch-page",
        "approve-then-publish"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_is_a_valid_workflow_with_a_fixed_lower_case_uuid(path: Path):
    body = load(path)
    assert set(body) <= {"id", "name", "description", "inputs", "steps"}
    assert str(uuid.UUID(body["id"])) == body["id"]
    definition(path)  # raises when invalid


def test_example_ids_are_unique():
    ids = [load(p)["id"] for p in FILES]
    assert len(ids) == len(set(ids))


def test_summarise_echo_answers_with_the_prompt_and_thinks():
    result = run_example("summarise-echo", {"topic": "tides"}, llm_provider="echo")
    assert result["error"] is None
    assert result["steps"]["summarise"]["outputs"] == {
        "text": "Write a short summary about tides.", "model": "echo"}
    assert result["thinking"]


def test_three_step_transform_chains_outputs():
    result = run_example("three-step-transform", {"name": "Ada"})
    assert result["steps"]["repeat"]["outputs"] == {"lines": ["HELLO, ADA!", "HELLO, ADA!"], "totalLength": 22}


def test_wait_then_finish_waits_two_seconds_then_completes():
    result = run_example("wait-then-finish", {})
    assert result["waits"] == [2]
    assert result["steps"]["finish"]["outputs"] == {"waited": 2, "message": "done"}


def test_approve_then_publish_renders_its_prompt_from_the_draft():
    workflow = definition(EXAMPLES / "approve-then-publish.yaml")
    assert [s.type for s in workflow.steps] == ["transform", "approval", "transform"]
    result = run_example("approve-then-publish", {"title": "v2"})
    assert result["steps"]["review"]["outputs"] == {"prompt": "Publish 'Release notes: v2'?"}
    # Even before any decision's outputs exist (the runner alone, no approve), publish renders:
    # the example needs nothing from its approver but the decision (the viewer sends no outputs).
    assert result["error"] is None
    assert result["steps"]["publish"]["outputs"] == {
        "note": "Release notes: v2", "channel": "release-notes", "comment": ""}


def test_approve_then_publish_takes_a_channel_and_comment_when_the_approver_sends_them():
    workflow = definition(EXAMPLES / "approve-then-publish.yaml")
    publish = next(s for s in workflow.steps if s.id == "publish")
    ctx = StepContext(
        run_id=str(uuid.uuid4()), activity_run_id=str(uuid.uuid4()), step=publish, attempt=1,
        inputs={"title": "v2"}, env={},
        steps={"draft": {"outputs": {"value": "Release notes: v2"}},
               "review": {"outputs": {"approved": True, "comment": "ship it", "channel": "blog"}}},
        settings=Settings(runs_table="runs", events_table="events"), emit_thinking=lambda _: None)
    assert registry.get("transform").run(ctx).outputs == {
        "note": "Release notes: v2", "channel": "blog", "comment": "ship it"}


def test_guarded_fail_stops_at_the_guard():
    result = run_example("guarded-fail", {})
    assert result["error"] == {"stepId": "guard", "message": "rejected: the input was rejected"}
    assert "never" not in result["steps"]


def test_fetch_page_fetches_a_local_page():
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = json.dumps({"hello": "page"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        result = run_example("fetch-page", {"url": f"http://127.0.0.1:{server.server_address[1]}/"},
                             http_step_allowed_hosts=("127.0.0.1",))
    finally:
        server.shutdown()
        server.server_close()
    assert result["error"] is None
    assert result["steps"]["fetch"]["outputs"]["body"] == {"hello": "page"}
    assert result["steps"]["report"]["outputs"] == {
        "statusCode": 200, "contentType": "application/json", "truncated": False}


def test_fetch_page_refuses_loopback_unless_allowed():
    result = run_example("fetch-page", {"url": "http://127.0.0.1:9/"})
    assert result["error"]["stepId"] == "fetch" and "refused" in result["error"]["message"]
