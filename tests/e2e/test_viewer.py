"""The run viewer (/viewer/) in headless Chromium against `workflow-runs dev`.

The page is driven as a user drives it (paste the token, press Run…, read the timeline) over
the DevTools protocol; every check reads the page's DOM. A proxy between Chromium and the dev
server can cut every open connection, as a dropped network does, to prove the page resumes
with Last-Event-ID and shows no event twice.

(docs/viewer.png comes from the README's tour, tests/e2e/test_viewer_tour.py.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.browser import Chromium, CuttableProxy, run_from_viewer, shown_event_ids, sign_in, step
from tests.e2e.devserver import RUNS, DevServer, dev_server

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="window.__owned = 1">'
LIVE = {
    "name": "Live <i>demo</i>",
    "inputs": [{"name": "topic", "type": "string", "required": False, "default": "tides"}],
    "steps": [
        {"id": "fetch", "name": "Gather notes", "type": "transform",
         "config": {"output": {"topic": "{{ inputs.topic }}", "note": HOSTILE}}},
        {"id": "pause", "name": "Wait for the tide", "type": "wait", "config": {"seconds": 3}},
        {"id": "think", "name": "Summarise", "type": "llm", "config": {"prompt": "Summarise {{ inputs.topic }}"}},
        {"id": "publish", "name": "Publish", "type": "transform", "config": {"output": {"published": True}}},
    ],
}
FAILING = {
    "name": "Fails on purpose",
    "steps": [
        {"id": "check", "type": "transform", "config": {"output": "checked"}},
        {"id": "guard", "name": "Stop here", "type": "fail", "config": {"message": "the guard said no"}},
        {"id": "never", "type": "transform", "config": {"output": "unreachable"}},
    ],
}


@pytest.fixture(scope="module")
def server(dynamodb_local_endpoint: str) -> Iterator[DevServer]:
    with dev_server(dynamodb_endpoint=dynamodb_local_endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def workflows(server: DevServer) -> dict[str, str]:
    return {"live": server.put_workflow(LIVE), "failing": server.put_workflow(FAILING)}


@pytest.fixture
def proxy(server: DevServer) -> Iterator[CuttableProxy]:
    with CuttableProxy(server.port) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Chromium]:
    with Chromium() as chromium:
        yield chromium


def test_timeline_fills_in_live_to_completed(server: DevServer, workflows: dict[str, str], browser: Chromium):
    # Given the viewer with the dev server's printed token pasted in
    sign_in(browser, server.public, server.token)
    # When the user runs a workflow from the page
    run_from_viewer(browser, workflows["live"], {"topic": "tides"})

    # Then, while the run waits in its middle, the timeline already shows the first step done
    # and the later ones not yet: the page is live, not a report drawn at the end
    browser.wait_for("document.getElementById('run-panel').dataset.status === 'waiting'", timeout=20)
    browser.wait_for(step("fetch", ".status") + ".textContent === 'completed'")
    browser.wait_for(step("publish", ".status"))  # the steps not reached are listed too …
    assert browser.evaluate(step("publish", ".status") + ".textContent") == "…"  # … as not reached
    assert browser.evaluate("document.getElementById('closing').hidden") is True
    run_id = browser.evaluate("document.getElementById('run-id').textContent")
    assert run_id and len(run_id) == 36

    # … and it reaches `completed`, with every step's status, attempt, duration and outputs
    browser.wait_for("document.getElementById('run-panel').dataset.status === 'completed'", timeout=30)
    browser.wait_for("!document.getElementById('closing').hidden")
    assert browser.evaluate("document.getElementById('closing').className") == "result"
    for step_id in ("fetch", "pause", "think", "publish"):
        browser.wait_for(step(step_id, ".status") + ".textContent === 'completed'")
        assert browser.evaluate(step(step_id, ".attempt") + ".textContent") == "attempt 1"
        browser.wait_for(step(step_id, ".duration") + ".textContent.endsWith(' s')")
    assert float(browser.evaluate(step("pause", ".duration") + ".textContent").split()[0]) >= 2.5
    # the llm step's thinking text streamed in; outputs are there but collapsed
    assert browser.evaluate(step("think", ".thinking") + ".textContent").strip()
    assert browser.evaluate(step("publish", "details.outputs-box") + ".open") is False
    assert json.loads(browser.evaluate(step("publish", ".outputs") + ".textContent")) == {"published": True}
    # … and it showed each of the run's events exactly once, in the server's order
    assert [tuple(e) for e in shown_event_ids(browser)] == server.events(run_id)
    assert browser.exceptions == []
    assert not [entry for entry in browser.log if "Content Security Policy" in entry]


def test_step_outputs_and_names_are_shown_as_text_never_as_markup(server: DevServer, workflows: dict[str, str],
                                                                   browser: Chromium):
    sign_in(browser, server.public, server.token)
    run_from_viewer(browser, workflows["live"])
    browser.wait_for(step("fetch", ".outputs") + "?.textContent.includes('onerror')", timeout=20)

    # The hostile output is on screen as the characters it is made of …
    outputs = json.loads(browser.evaluate(step("fetch", ".outputs") + ".textContent"))
    assert outputs["note"] == HOSTILE
    # … and nothing of it became an element or ran: no <img>, no <i>, no handler fired
    assert browser.evaluate("document.querySelectorAll('main img, main i').length") == 0
    assert browser.evaluate("window.__owned") is None
    row = f"#workflows tr[data-workflow='{workflows['live']}'] td"
    assert browser.evaluate(f"document.querySelector({json.dumps(row)}).textContent").startswith("Live <i>demo</i>")
    assert browser.exceptions == []


def test_a_failed_run_shows_its_error_and_offers_retry(server: DevServer, workflows: dict[str, str],
                                                       browser: Chromium):
    sign_in(browser, server.public, server.token)
    run_from_viewer(browser, workflows["failing"])

    browser.wait_for("document.getElementById('run-panel').dataset.status === 'failed'", timeout=20)
    browser.wait_for("!document.getElementById('closing').hidden")
    closing = browser.evaluate("document.getElementById('closing').textContent")
    assert "the guard said no" in closing and "guard" in closing
    assert browser.evaluate("document.getElementById('closing').className") == "error"
    browser.wait_for(step("guard", ".status") + ".textContent === 'failed'")
    assert browser.evaluate(step("check", ".status") + ".textContent") == "completed"
    assert browser.evaluate(step("never", ".status") + ".textContent") == "…"  # never reached
    browser.wait_for("!document.getElementById('retry-run').hidden")
    assert browser.evaluate("document.getElementById('cancel-run').hidden") is True


def test_cancel_ends_a_waiting_run_and_the_timeline_says_so(server: DevServer, browser: Chromium):
    workflow_id = server.put_workflow({"name": "Waits a minute",
                                       "steps": [{"id": "pause", "type": "wait", "config": {"seconds": 60}},
                                                 {"id": "after", "type": "transform", "config": {"output": 1}}]})
    sign_in(browser, server.public, server.token)
    run_from_viewer(browser, workflow_id)
    browser.wait_for("document.getElementById('run-panel').dataset.status === 'waiting'", timeout=20)
    browser.wait_for("!document.getElementById('cancel-run').hidden")
    assert browser.evaluate("document.getElementById('retry-run').hidden") is True

    browser.click("#cancel-run")

    browser.wait_for("document.getElementById('run-panel').dataset.status === 'cancelled'", timeout=20)
    browser.wait_for("!document.getElementById('closing').hidden")
    assert browser.evaluate("document.getElementById('closing').textContent").startswith("Cancelled")
    browser.wait_for("document.getElementById('cancel-run').hidden")
    browser.wait_for(step("pause", ".status") + ".textContent === 'cancelled'")
    assert browser.evaluate(step("after", ".status") + ".textContent") == "…"
    run_id = browser.evaluate("document.getElementById('run-id').textContent")
    reply = httpx.get(f"{server.public}{RUNS}/{run_id}", headers=server.headers, timeout=10).json()
    assert reply["workflowRun"]["cancelReason"] == "cancelled from the viewer"


def test_a_dropped_connection_resumes_without_duplicates(server: DevServer, workflows: dict[str, str],
                                                         browser: Chromium, proxy: CuttableProxy):
    # Given the viewer loaded through a proxy that can drop every connection
    sign_in(browser, proxy.url, server.token)
    run_from_viewer(browser, workflows["live"])
    browser.wait_for("document.getElementById('run-panel').dataset.status === 'waiting'", timeout=20)
    before = len(shown_event_ids(browser))

    # When the network drops in the middle of the run
    assert proxy.cut() >= 1

    # Then the page reconnects with Last-Event-ID and follows the run to its end …
    browser.wait_for("Number(document.getElementById('run-panel').dataset.reconnects) >= 1", timeout=15)
    browser.wait_for("document.getElementById('run-panel').dataset.status === 'completed'", timeout=30)
    browser.wait_for("!document.getElementById('closing').hidden")
    run_id = browser.evaluate("document.getElementById('run-id').textContent")
    shown = [tuple(e) for e in shown_event_ids(browser)]
    # … having shown every event exactly once, in order: none lost, none twice
    assert len(shown) > before
    assert shown == server.events(run_id)
    assert len({event_id for event_id, _ in shown}) == len(shown)
    thinking = browser.evaluate(step("think", ".thinking") + ".textContent")
    assert thinking.strip()


def test_runs_list_pages_with_next_token_and_shows_counts_per_workflow(server: DevServer, browser: Chromium):
    # Given a workflow with three completed runs
    workflow_id = server.put_workflow({"name": "Counted thrice",
                                       "steps": [{"id": "only", "type": "transform", "config": {"output": 1}}]})
    for _ in range(3):
        reply = httpx.post(f"{server.public}{RUNS}/execute", json={"workflowId": workflow_id},
                           headers=server.headers, timeout=30)
        assert reply.status_code == 200 and reply.json()["workflowRun"]["status"] == "completed"
    sign_in(browser, server.public, server.token)

    # The workflows table shows its dashboard counts
    counts = f"document.querySelector('#workflows tr[data-workflow=\"{workflow_id}\"] .counts').textContent"
    browser.wait_for(f"{counts}.includes('completed 3')")
    assert "total 3" in browser.evaluate(counts)

    # When the user lists that workflow's runs two at a time
    browser.click(f"#workflows tr[data-workflow='{workflow_id}'] button")
    browser.fill("#f-limit", "2")
    browser.fill("#f-status", "completed")
    browser.click("#filters button[type=submit]")
    browser.wait_for("document.querySelectorAll('#runs tbody tr').length === 2")
    first_page = browser.evaluate("[...document.querySelectorAll('#runs tbody tr')].map(r => r.dataset.run)")
    assert browser.evaluate("document.getElementById('next-page').disabled") is False

    # Then the next page (nextToken) holds the third run, and it is the last page
    browser.click("#next-page")
    browser.wait_for("document.querySelectorAll('#runs tbody tr').length === 1")
    second_page = browser.evaluate("[...document.querySelectorAll('#runs tbody tr')].map(r => r.dataset.run)")
    assert not set(first_page) & set(second_page)
    assert browser.evaluate("document.getElementById('next-page').disabled") is True

    # … search narrows by workflow name
    browser.fill("#f-workflow", "")
    browser.fill("#f-status", "")
    browser.fill("#f-search", "counted THRICE")
    browser.fill("#f-limit", "10")
    browser.click("#filters button[type=submit]")
    browser.wait_for("document.querySelectorAll('#runs tbody tr').length === 3")

    # … and a run opened from the list replays its timeline to the end
    browser.click(f"#runs tbody tr[data-run='{second_page[0]}'] a")
    browser.wait_for("document.getElementById('run-panel').dataset.status === 'completed'")
    browser.wait_for(step("only", ".status") + ".textContent === 'completed'")


def test_internal_listener_needs_no_token(server: DevServer, workflows: dict[str, str], browser: Chromium):
    browser.goto(f"{server.internal}/viewer/#tenant=dev")
    browser.wait_for(f"document.querySelector('#workflows tr[data-workflow=\"{workflows['failing']}\"]')")
    assert browser.evaluate("sessionStorage.getItem('workflow-runs.token')") is None
    assert "tenant dev" in browser.evaluate("document.getElementById('auth-state').textContent")


def test_before_a_token_the_page_asks_for_one_and_shows_no_error(server: DevServer, browser: Chromium):
    browser.goto(f"{server.public}/viewer/#run=0f1c2d3e-0000-4000-8000-000000000000")
    browser.wait_for("document.getElementById('auth-state').textContent.includes('paste the token')")
    time.sleep(0.5)  # had the page asked the API without credentials, its 401 would be on screen by now
    assert browser.evaluate("document.getElementById('notice').hidden") is True
    assert browser.evaluate("document.getElementById('welcome').hidden") is False
    assert browser.evaluate("document.getElementById('run-panel').hidden") is True
    assert browser.exceptions == []

    # a token pasted: the lists load, the run in the address opens, and the greeting goes
    browser.fill("#token", server.token)
    browser.click("#auth button[type=submit]")
    browser.wait_for("document.querySelectorAll('#workflows tbody tr').length > 0")
    assert browser.evaluate("document.getElementById('welcome').hidden") is True
    browser.wait_for("!document.getElementById('run-panel').hidden")


def test_the_dev_server_prints_the_viewer_url_next_to_the_curl_lines(server: DevServer):
    lines = server.banner.splitlines()
    curl = max(i for i, line in enumerate(lines) if line.lstrip().startswith("curl "))
    viewer = next(i for i, line in enumerate(lines) if f"viewer: {server.public}/viewer/" in line)
    assert abs(viewer - curl) <= 2
    assert f"{server.internal}/viewer/#tenant=dev" in server.banner
    page = httpx.get(f"{server.public}/viewer/", timeout=10)
    assert page.status_code == 200 and '<script type="module" src="viewer.js">' in page.text


def test_the_browser_enforces_the_pages_policy(server: DevServer, browser: Chromium):
    browser.goto(f"{server.public}/viewer/")
    # an inline script, as an injection would add one: the policy stops it
    browser.evaluate("(() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
                     " document.body.append(s); })()")
    # … and a request to another origin
    browser.evaluate("fetch('http://127.0.0.1:9/steal').catch(() => null)")
    def blocked() -> list[str]:
        return [entry for entry in browser.log if "Content Security Policy" in entry]

    deadline = time.monotonic() + 10  # the browser reports violations asynchronously
    while len(blocked()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert browser.evaluate("window.__ran") is None
    assert any("inline script" in entry for entry in blocked()), browser.log
    assert any("127.0.0.1:9" in entry for entry in blocked()), browser.log
