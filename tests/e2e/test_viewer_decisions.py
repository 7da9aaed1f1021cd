"""The viewer's Approve/Reject and Retry buttons, in headless Chromium against `workflow-runs dev`.

Written against the contract (the shared API contract's "Approval steps" and "Retry a failed
run", issue 17): these fail until the approval step type and the approve/reject/retry routes
exist in the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.browser import Chromium, run_from_viewer, sign_in, step
from tests.e2e.devserver import RUNS, DevServer, dev_server

pytestmark = pytest.mark.browser

FAILING = {
    "name": "Fails, then is retried",
    "steps": [
        {"id": "check", "type": "transform", "config": {"output": "checked"}},
        {"id": "guard", "type": "fail", "config": {"message": "the guard said no"}},
    ],
}

APPROVAL = {
    "name": "Needs a yes",
    "steps": [
        {"id": "draft", "type": "transform", "config": {"output": {"text": "a draft"}}},
        {"id": "review", "name": "Review the draft", "type": "approval",
         "config": {"prompt": "Ship {{ steps.draft.outputs.text }}?", "timeoutSeconds": 600}},
        {"id": "ship", "type": "transform", "config": {"output": {"shipped": True}}},
    ],
}


@pytest.fixture(scope="module")
def server(dynamodb_local_endpoint: str) -> Iterator[DevServer]:
    with dev_server(dynamodb_endpoint=dynamodb_local_endpoint) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Chromium]:
    with Chromium() as chromium:
        yield chromium


def wait_for_decision(browser: Chromium) -> None:
    browser.wait_for("document.getElementById('run-panel').dataset.status === 'waiting'", timeout=20)
    browser.wait_for(step("review", "button.approve"), timeout=20)
    assert json.loads(browser.evaluate(step("review", ".outputs") + ".textContent")) == {"prompt": "Ship a draft?"}


def test_approve_lets_the_run_go_on(server: DevServer, browser: Chromium):
    workflow_id = server.put_workflow(APPROVAL)
    sign_in(browser, server.public, server.token)
    run_from_viewer(browser, workflow_id)
    wait_for_decision(browser)
    assert browser.evaluate(step("ship", ".status") + ".textContent") == "…"

    browser.fill("#timeline li[data-step=review] input.comment", "looks good")
    browser.click("#timeline li[data-step=review] button.approve")

    browser.wait_for("document.getElementById('run-panel').dataset.status === 'completed'", timeout=20)
    browser.wait_for(step("ship", ".status") + ".textContent === 'completed'")
    browser.wait_for("!" + step("review", "button.approve"))
    outputs = json.loads(browser.evaluate(step("review", ".outputs") + ".textContent"))
    assert outputs["approved"] is True and outputs["comment"] == "looks good"


def test_reject_fails_the_run_with_the_comment(server: DevServer, browser: Chromium):
    workflow_id = server.put_workflow(APPROVAL)
    sign_in(browser, server.public, server.token)
    run_from_viewer(browser, workflow_id)
    wait_for_decision(browser)

    browser.fill("#timeline li[data-step=review] input.comment", "not this one")
    browser.click("#timeline li[data-step=review] button.reject")

    browser.wait_for("document.getElementById('run-panel').dataset.status === 'failed'", timeout=20)
    browser.wait_for("!document.getElementById('closing').hidden")
    assert "not this one" in browser.evaluate("document.getElementById('closing').textContent")
    assert browser.evaluate(step("ship", ".status") + ".textContent") == "…"


def test_retry_starts_a_new_run_from_the_failed_step(server: DevServer, browser: Chromium):
    workflow_id = server.put_workflow(FAILING)
    sign_in(browser, server.public, server.token)
    run_from_viewer(browser, workflow_id)
    browser.wait_for("document.getElementById('run-panel').dataset.status === 'failed'", timeout=20)
    failed_run = browser.evaluate("document.getElementById('run-id').textContent")
    browser.wait_for("!document.getElementById('retry-run').hidden")

    browser.click("#retry-run")

    # the page now follows the new run: its completed step reused, the failed one run again
    browser.wait_for(f"document.getElementById('run-id').textContent !== {json.dumps(failed_run)}", timeout=20)
    new_run = browser.evaluate("document.getElementById('run-id').textContent")
    browser.wait_for("document.getElementById('run-panel').dataset.status === 'failed'", timeout=20)
    browser.wait_for(step("check", ".status") + ".textContent === 'completed'")
    browser.wait_for(f"document.getElementById('run-meta').textContent.includes('retry of {failed_run}')")
    assert "reused" in browser.evaluate(step("check", ".step-head") + ".textContent")
    reply = httpx.get(f"{server.public}{RUNS}/{new_run}", headers=server.headers, timeout=10).json()
    assert reply["workflowRun"]["retryOf"] == failed_run
    assert [a["reused"] for a in reply["workflowRun"]["activityRuns"] if a["stepId"] == "check"] == [True]
    old = httpx.get(f"{server.public}{RUNS}/{failed_run}", headers=server.headers, timeout=10).json()
    assert old["workflowRun"]["status"] == "failed" and old["workflowRun"]["retriedBy"] == new_run
