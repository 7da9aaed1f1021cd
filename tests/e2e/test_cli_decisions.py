"""`workflow-runs approve | reject | runs retry` in a real terminal against `workflow-runs dev`.

Written against the contract (the shared API contract's "Approval steps" and "Retry a failed
run", issue 17): these fail until the approval step type and the approve/reject/retry routes
exist in the server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.devserver import RUNS, DevServer, dev_server
from tests.e2e.terminal import cli as terminal

APPROVAL = {
    "name": "Needs a yes (terminal)",
    "steps": [
        {"id": "draft", "type": "transform", "config": {"output": {"text": "a draft"}}},
        {"id": "review", "type": "approval", "config": {"prompt": "Ship {{ steps.draft.outputs.text }}?"}},
        {"id": "ship", "type": "transform", "config": {"output": {"shipped": True}}},
    ],
}
FAILING = {
    "name": "Fails, then is retried (terminal)",
    "steps": [
        {"id": "check", "type": "transform", "config": {"output": "checked"}},
        {"id": "guard", "type": "fail", "config": {"message": "the guard said no"}},
    ],
}


@pytest.fixture(scope="module")
def server(dynamodb_local_endpoint: str) -> Iterator[DevServer]:
    with dev_server(dynamodb_endpoint=dynamodb_local_endpoint) as running:
        yield running


def test_approve_from_the_terminal_lets_the_followed_run_complete(server: DevServer):
    workflow_id = server.put_workflow(APPROVAL)
    with terminal(server.public, server.token, "run", workflow_id, "--follow") as follow:
        run_id = follow.expect(r"^run ([0-9a-f-]{36})$").group(1)
        follow.expect(r"^  step review: waiting")
        with terminal(server.public, server.token, "approve", run_id, "review", "--comment", "fine",
                      "--outputs", '{"by": "cli"}') as approve:
            assert approve.wait(30) == 0, approve.output
        assert f"approved step review of run {run_id}" in approve.output
        assert follow.wait(30) == 0, follow.output
    assert "finished: completed" in follow.output
    review = re.search(r"^  review: (\{.*\})$", follow.output, re.MULTILINE).group(1)
    outputs = json.loads(review)
    assert outputs["approved"] is True and outputs["comment"] == "fine" and outputs["by"] == "cli"


def test_reject_from_the_terminal_fails_the_followed_run(server: DevServer):
    workflow_id = server.put_workflow(APPROVAL)
    with terminal(server.public, server.token, "run", workflow_id, "--follow") as follow:
        run_id = follow.expect(r"^run ([0-9a-f-]{36})$").group(1)
        follow.expect(r"^  step review: waiting")
        with terminal(server.public, server.token, "reject", run_id, "review", "--comment", "no") as reject:
            assert reject.wait(30) == 0, reject.output
        assert follow.wait(30) == 1, follow.output
    assert "error at step review: no" in follow.output


def test_a_decision_on_a_step_that_is_not_waiting_exits_4(server: DevServer):
    workflow_id = server.put_workflow(FAILING)
    with terminal(server.public, server.token, "run", workflow_id) as run:
        assert run.wait(30) == 1
    run_id = re.search(r"^run ([0-9a-f-]{36})", run.output, re.MULTILINE).group(1)
    with terminal(server.public, server.token, "approve", run_id, "guard") as approve:
        assert approve.wait(30) == 4
    assert "409 Conflict" in approve.output


def test_retry_follows_the_new_run_and_the_old_one_points_to_it(server: DevServer):
    workflow_id = server.put_workflow(FAILING)
    with terminal(server.public, server.token, "run", workflow_id) as run:
        assert run.wait(30) == 1
    failed = re.search(r"^run ([0-9a-f-]{36})", run.output, re.MULTILINE).group(1)

    with terminal(server.public, server.token, "runs", "retry", failed, "--follow") as retry:
        code = retry.wait(60)
    assert code == 1, retry.output  # the same fail step fails again
    new = re.search(rf"^retrying {failed} as ([0-9a-f-]{{36}})$", retry.output, re.MULTILINE).group(1)
    assert re.search(r"^  check\s+completed\s+attempt \d+\s+\S+ s  \(reused\)$", retry.output, re.MULTILINE), \
        retry.output
    old = httpx.get(f"{server.public}{RUNS}/{failed}", headers=server.headers, timeout=10).json()["workflowRun"]
    assert old["retriedBy"] == new


def test_retry_of_a_run_that_did_not_fail_exits_4(server: DevServer):
    workflow_id = server.put_workflow({"name": "Completes", "steps": [{"id": "only", "type": "transform",
                                                                        "config": {"output": 1}}]})
    with terminal(server.public, server.token, "run", workflow_id) as run:
        assert run.wait(30) == 0
    completed = re.search(r"^run ([0-9a-f-]{36})", run.output, re.MULTILINE).group(1)
    with terminal(server.public, server.token, "runs", "retry", completed, "--json") as retry:
        assert retry.wait(30) == 4
    assert json.loads(retry.output.splitlines()[0])["error"] == "Conflict"
