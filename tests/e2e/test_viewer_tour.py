"""The README's viewer tour, walked in headless Chromium against `workflow-runs dev` started
as `make dev` starts it (the example workflows loaded): token, list, run, follow, approve,
retry. Each step is checked on the page as a user reads it and saved as a screenshot in
tests/e2e/screenshots/ (git-ignored); docs/viewer.png is the approval step's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.browser import Chromium, run_from_viewer, step
from tests.e2e.devserver import RUNS, DevServer, dev_server

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
APPROVE_THEN_PUBLISH = "0f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d06"  # examples/approve-then-publish.yaml
GUARDED_FAIL = "0f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d04"  # examples/guarded-fail.yaml
PANEL_STATUS = "document.getElementById('run-panel').dataset.status"


@pytest.fixture(scope="module")
def server(dynamodb_local_endpoint: str) -> Iterator[DevServer]:
    with dev_server(examples=True, dynamodb_endpoint=dynamodb_local_endpoint) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Chromium]:
    with Chromium(width=1280, height=1000) as chromium:
        yield chromium


def shot(browser: Chromium, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    browser.screenshot(SCREENSHOTS / f"{name}.png")


def counts(workflow_id: str) -> str:
    return f"document.querySelector('#workflows tr[data-workflow=\"{workflow_id}\"] .counts').textContent"


def run_row_status(run_id: str) -> str:
    return f"document.querySelector('#runs tr[data-run=\"{run_id}\"] .status')?.textContent"


def in_view(selector: str) -> str:
    return (f"(r => r.top >= 0 && r.top < innerHeight)(document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect())")


def test_the_readme_viewer_tour(server: DevServer, browser: Chromium):
    # 1. Token: before one is given, the page says what to paste, and no error
    browser.goto(f"{server.public}/viewer/")
    browser.wait_for("document.getElementById('auth-state').textContent.includes('paste the token')")
    assert browser.evaluate("document.getElementById('notice').hidden") is True
    assert browser.evaluate("document.getElementById('welcome').hidden") is False
    shot(browser, "1-token")
    browser.fill("#token", server.token)
    browser.click("#auth button[type=submit]")

    # 2. List: every example workflow, with its counts; the runs list (empty yet)
    browser.wait_for(f"document.querySelector('#workflows tr[data-workflow=\"{APPROVE_THEN_PUBLISH}\"] .counts')")
    assert browser.evaluate("document.querySelectorAll('#workflows tbody tr').length") >= 6
    assert browser.evaluate("document.getElementById('welcome').hidden") is True
    browser.wait_for("document.getElementById('page-info').textContent.startsWith('page 1 of 1')")
    shot(browser, "2-list")

    # 3. Run the approval example from its row, 4. follow it: it opens in view, live, and
    # stops at the review, whose prompt and how to decide are on screen
    run_from_viewer(browser, APPROVE_THEN_PUBLISH, {"title": "v2"})
    browser.wait_for(f"{PANEL_STATUS} === 'waiting'", timeout=30)
    assert browser.evaluate(in_view("#run-panel")) is True
    browser.wait_for(step("review", ".decision") + "?.hidden === false")
    decision = browser.evaluate(step("review", ".decision") + ".textContent")
    assert "Publish 'Release notes: v2'?" in decision
    run_id = browser.evaluate("document.getElementById('run-id').textContent")
    assert f"workflow-runs approve {run_id} review" in decision
    # the lists followed the run from its stream: its row and its workflow's counts say waiting
    browser.wait_for(f"{run_row_status(run_id)} === 'waiting'")
    browser.wait_for(f"{counts(APPROVE_THEN_PUBLISH)}.includes('waiting 1')")
    # times are the reader's local time, the UTC instant on hover
    created = browser.evaluate("(t => [t.textContent, t.title, t.dateTime])(document.querySelector('#runs time'))")
    assert created[1].endswith("Z (UTC)") and created[2].endswith("Z") and created[0] != created[2]
    shot(browser, "3-follow")

    # 5. Approve, with no outputs (the viewer has no field for them): the run completes, and
    # the runs row and the counts follow with no click
    browser.wait_for("document.querySelector('#timeline li[data-step=review] input.comment') !== null")
    browser.fill("#timeline li[data-step=review] input.comment", "ship it")
    browser.click("#timeline li[data-step=review] button.approve")
    browser.wait_for(f"{PANEL_STATUS} === 'completed'", timeout=30)
    browser.wait_for(step("publish", ".status") + ".textContent === 'completed'")
    assert json.loads(browser.evaluate(step("publish", ".outputs") + ".textContent")) == {
        "note": "Release notes: v2", "channel": "release-notes", "comment": "ship it"}
    assert browser.evaluate(step("review", ".decision") + ".hidden") is True
    browser.wait_for(f"{run_row_status(run_id)} === 'completed'")
    browser.wait_for(f"{counts(APPROVE_THEN_PUBLISH)}.includes('completed 1')")
    assert "waiting" not in browser.evaluate(counts(APPROVE_THEN_PUBLISH))
    browser.evaluate(step("publish", "details.outputs-box") + ".open = true")
    browser.evaluate("window.scrollTo(0, 0)")
    shot(browser, "4-approve")

    # 6. Retry: a run that fails on purpose, retried from the page; the new run reuses the
    # completed step and fails again at the guard
    run_from_viewer(browser, GUARDED_FAIL)
    browser.wait_for(f"{PANEL_STATUS} === 'failed'", timeout=30)
    failed = browser.evaluate("document.getElementById('run-id').textContent")
    browser.wait_for("!document.getElementById('retry-run').hidden")
    browser.click("#retry-run")
    browser.wait_for(f"document.getElementById('run-id').textContent !== {json.dumps(failed)}", timeout=20)
    browser.wait_for(f"document.getElementById('run-meta').textContent.includes('retry of {failed}')")
    browser.wait_for(f"{PANEL_STATUS} === 'failed'", timeout=30)
    browser.wait_for(step("check", ".step-head") + ".textContent.includes('reused')")
    browser.wait_for(f"{counts(GUARDED_FAIL)}.includes('failed 2')")
    assert browser.evaluate(in_view("#run-panel")) is True
    shot(browser, "5-retry")
    retried = browser.evaluate("document.getElementById('run-id').textContent")
    reply = httpx.get(f"{server.public}{RUNS}/{retried}", headers=server.headers, timeout=10).json()
    assert reply["workflowRun"]["retryOf"] == failed
    assert browser.exceptions == []


def test_the_runs_list_says_which_page_it_is_on(server: DevServer, browser: Chromium):
    for _ in range(3):
        reply = httpx.post(f"{server.public}{RUNS}/execute", headers=server.headers, timeout=30,
                           json={"workflowId": "0f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d02"})
        assert reply.status_code == 200
    browser.goto(f"{server.public}/viewer/")
    browser.fill("#token", server.token)
    browser.click("#auth button[type=submit]")
    browser.fill("#f-limit", "2")
    browser.click("#filters button[type=submit]")
    browser.wait_for("document.getElementById('page-info').textContent.startsWith('page 1 of ')")
    pages = int(browser.evaluate("document.getElementById('page-info').textContent").split()[3])
    assert pages >= 2
    browser.click("#next-page")
    browser.wait_for(f"document.getElementById('page-info').textContent.startsWith('page 2 of {pages}')")
    browser.click("#first-page")
    browser.wait_for(f"document.getElementById('page-info').textContent.startsWith('page 1 of {pages}')")
