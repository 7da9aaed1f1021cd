"""Chaos: faults on every AWS call of every function, through HTTP, and the contract holds.

`workflow-runs dev`'s runtime, in-process, with one FaultInjector in front of everything it
calls: every DynamoDB request of the API, the step runner, the projector and the
reconciler (reads, queries and stream reads included), the stream poller's DynamoDB
Streams reads, the orchestrator's Step Functions calls (StartExecution, StopExecution,
SendTaskSuccess/Failure) and the model call of `llm` steps. Throttles, 5xx, conflicts and
faults past botocore's retries come as rates, and storms fail every call for 3 s, then
calm, over and over. Meanwhile clients execute (blocking and streamed), approve, cancel and
retry over HTTP. Then, once calm:

- no request whose run was created was answered 5xx (503 only when nothing was created);
  a blocking execute still going answered 202 with `Location`;
- no stream sent an `error` it made up (a string `details`): a stream ends with its run's
  closing event, or without one (the client resumes);
- every run ended as its workflow says (nothing `failed` that a retry would have carried
  through), and every run's event log ends with its closing event.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from workflow_runs.models import WorkflowDefinition
from workflow_runs.states import CLOSING_EVENTS
from workflow_runs_dev.dynamodb_local import free_port
from workflow_runs_dev.faults import FaultInjector
from workflow_runs_dev.runtime import LocalRuntime

pytestmark = [pytest.mark.dynamodb_local, pytest.mark.timeout(300)]

RUNS = "/api/v1/workflow-runs"
TENANT = "chaos"
HEADERS = {"X-Tenant-Id": TENANT}
LOAD_SECONDS = 18.0
SETTLE_SECONDS = 90.0
TAG = [{"name": "tag", "type": "string", "required": True}]
THINKING = {"name": "Think", "inputs": TAG, "steps": [
    {"id": "first", "type": "transform", "config": {"output": "{{ inputs.tag }}"}},
    {"id": "think", "type": "llm", "config": {"prompt": "Say {{ inputs.tag }}"}},
    {"id": "last", "type": "transform", "config": {"output": "done"}},
]}
APPROVED = {"name": "Approve", "inputs": TAG, "steps": [
    {"id": "draft", "type": "transform", "config": {"output": "{{ inputs.tag }}"}},
    {"id": "review", "type": "approval", "config": {"prompt": "Go?", "timeoutSeconds": 600}},
    {"id": "publish", "type": "transform", "config": {"output": "published"}},
]}
WAITING = {"name": "Wait", "inputs": TAG, "steps": [
    {"id": "nap", "type": "wait", "config": {"seconds": 60}},
    {"id": "after", "type": "transform", "config": {"output": "late"}},
]}
FAILING = {"name": "Fail", "inputs": TAG, "steps": [
    {"id": "check", "type": "transform", "config": {"output": "{{ inputs.tag }}"}},
    {"id": "guard", "type": "fail", "config": {"message": "refused on purpose"}},
]}


@dataclass
class Answer:
    kind: str
    tag: str
    status: int
    location: str | None = None
    events: list[tuple[str, str, Any]] = field(default_factory=list)


@dataclass
class Chaos:
    runtime: LocalRuntime
    faults: FaultInjector
    workflows: dict[str, str]
    answers: list[Answer] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return self.runtime.internal_url + RUNS

    def note(self, answer: Answer) -> Answer:
        with self.lock:
            self.answers.append(answer)
        return answer

    def body(self, workflow: str, tag: str) -> dict[str, Any]:
        return {"workflowId": self.workflows[workflow], "inputs": {"tag": tag}}

    # ------------------------------------------------------------------ the clients

    def execute(self, workflow: str) -> Answer:
        tag = f"{workflow}-{uuid.uuid4().hex[:12]}"
        try:
            reply = httpx.post(f"{self.url}/execute", json=self.body(workflow, tag), headers=HEADERS, timeout=60)
        except httpx.HTTPError as exc:
            self.problems.append(f"execute {tag}: {exc!r}")
            return self.note(Answer("execute", tag, 0))
        return self.note(Answer("execute", tag, reply.status_code, reply.headers.get("location"),
                                [("", "", reply.json())]))

    def execute_stream(self, workflow: str) -> Answer:
        tag = f"{workflow}-{uuid.uuid4().hex[:12]}"
        answer = Answer("stream", tag, 0)
        try:
            with httpx.stream("POST", f"{self.url}/execute/stream", json=self.body(workflow, tag), headers=HEADERS,
                              timeout=60) as reply:
                answer.status = reply.status_code
                if reply.status_code == 200:
                    answer.events = sse_events(reply.iter_lines())
        except httpx.HTTPError as exc:
            self.problems.append(f"stream {tag}: {exc!r}")
        return self.note(answer)

    def insist(self, kind: str, call: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool]) -> None:
        """Make a call until it is `done`, as a client does after a 503 (nothing changed)."""
        for _ in range(40):
            try:
                reply = call()
            except httpx.HTTPError:
                time.sleep(0.5)
                continue
            self.note(Answer(kind, "", reply.status_code))
            if done(reply):
                return
            time.sleep(0.5)
        self.problems.append(f"{kind} never went through")

    def run_of(self, answer: Answer) -> dict[str, Any] | None:
        body = answer.events[0][2] if answer.events else None
        return body.get("workflowRun") if isinstance(body, dict) else None

    def status_of(self, run_id: str) -> str | None:
        try:
            reply = httpx.get(f"{self.url}/{run_id}", headers=HEADERS, timeout=30)
        except httpx.HTTPError:
            return None
        return reply.json()["workflowRun"]["status"] if reply.status_code == 200 else None

    def until_status(self, run_id: str, statuses: set[str], seconds: float = 40) -> bool:
        give_up = time.monotonic() + seconds
        while time.monotonic() < give_up:
            if self.status_of(run_id) in statuses:
                return True
            time.sleep(0.3)
        return False

    def started(self, workflow: str, reached: set[str] | None = None) -> dict[str, Any] | None:
        """A run of `workflow` executed (None when the execute created nothing: 503), once it
        has reached one of `reached`."""
        answer = self.execute(workflow)
        run = self.run_of(answer)
        if run is None:
            if answer.status != 503:
                self.problems.append(f"execute of {workflow} answered {answer.status} without a run")
            return None
        if reached and not self.until_status(run["id"], reached):
            self.problems.append(f"run {run['id']} of {workflow} never became {reached}")
            return None
        return run

    def approve(self) -> None:
        run = self.started("approved", {"waiting"})
        if run is None:
            return
        self.insist("approve", lambda: httpx.post(f"{self.url}/{run['id']}/steps/review/approve", json={},
                                                  headers=HEADERS, timeout=30),
                    lambda r: r.status_code == 200 or self.status_of(run["id"]) not in ("waiting", None))

    def cancel(self) -> None:
        run = self.started("waiting")
        if run is None:
            return
        self.insist("cancel", lambda: httpx.post(f"{self.url}/cancel", json={"runIds": [run["id"]]}, headers=HEADERS,
                                                 timeout=30),
                    lambda r: self.status_of(run["id"]) == "cancelled")

    def retry(self) -> None:
        run = self.started("failing", {"failed"})
        if run is None:
            return
        self.insist("retry", lambda: httpx.post(f"{self.url}/{run['id']}/retry", headers=HEADERS, timeout=30),
                    lambda r: r.status_code == 202)


def sse_events(lines: Iterator[str]) -> list[tuple[str, str, Any]]:

    events, event_id, name, data = [], "", "message", ""
    for line in lines:
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "":
            if name != "ping" and data:
                events.append((event_id, name, json.loads(data)))
            event_id, name, data = "", "message", ""
    return events


@pytest.fixture
def chaos(dynamodb_local_endpoint: str) -> Iterator[Chaos]:
    suffix = uuid.uuid4().hex[:10]
    faults = FaultInjector(conflict_rate=0.05, throttle_rate=0.05, error_rate=0.04, surface_rate=0.04, guard_rate=0.15,
                           storm_seconds=3.0, storm_at=4.0, storm_every=9.0, seed=25)
    runtime = LocalRuntime(
        port=free_port(), internal_port=free_port(), dynamodb_endpoint=dynamodb_local_endpoint, faults=faults,
        env={"RUNS_TABLE": f"runs-{suffix}", "EVENTS_TABLE": f"events-{suffix}", "EXECUTE_WAIT_SECONDS": "6",
             "SSE_POLL_MAX_SECONDS": "0.2", "STREAM_MAX_SECONDS": "20"},
    ).start()
    try:
        assert runtime.service is not None
        with faults.suspended():
            workflows = {name: runtime.service.put_workflow(TENANT, str(uuid.uuid4()),
                                                             WorkflowDefinition.model_validate(definition)).id
                         for name, definition in (("thinking", THINKING), ("approved", APPROVED),
                                                  ("waiting", WAITING), ("failing", FAILING))}
        yield Chaos(runtime, faults, workflows)
    finally:
        runtime.stop()


def test_faults_on_every_call_never_lose_a_created_run_nor_a_closing_event(chaos: Chaos):
    # When clients execute, stream, approve, cancel and retry through rates and storms
    stop_at = time.monotonic() + LOAD_SECONDS

    def loop(work: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            while time.monotonic() < stop_at:
                work()
        return run

    threads = [threading.Thread(target=loop(work)) for work in (
        lambda: chaos.execute("thinking"), lambda: chaos.execute_stream("thinking"),
        lambda: chaos.execute_stream("thinking"), chaos.approve, chaos.cancel, chaos.retry)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=LOAD_SECONDS + 120)
    faults = chaos.faults
    faults.storm(0)  # calm from now on
    faults.conflict_rate = faults.throttle_rate = faults.error_rate = faults.surface_rate = faults.guard_rate = 0.0
    stats = faults.stats
    answers = chaos.answers
    broken: dict[str, list[Any]] = {"client": list(chaos.problems)}

    # Then every run settles as its workflow says, its event log ending with its closing event
    runtime = chaos.runtime
    store = runtime.store
    assert store is not None
    runs = settled_runs(chaos, time.monotonic() + SETTLE_SECONDS)
    by_tag = {run["inputs"][0]["value"]: run for run in runs}
    name_of = {workflow_id: name for name, workflow_id in chaos.workflows.items()}
    broken["never ended"] = [r["id"] for r in runs if r["status"] not in ("completed", "failed", "cancelled")]
    broken["ended otherwise than its workflow says"] = [
        (name_of[r["workflowId"]], r["status"], (r.get("error") or {}).get("message")) for r in runs
        if r["status"] not in ("waiting", expected_status(name_of[r["workflowId"]]))]
    with faults.suspended():
        broken["event log without its closing event"] = [
            (run_id, [e[1] for e in store.events_after(run_id, None)][-3:])
            for run_id in logs_without_closing_event(chaos, [r["id"] for r in runs], time.monotonic() + 30)]

    # … no request whose run was created was answered 5xx; 202s carry Location
    broken["5xx after the run was created"] = [
        (a.kind, a.status) for a in answers if a.kind in ("execute", "stream") and a.status >= 500 and a.tag in by_tag]
    broken["5xx other than 503"] = [(a.kind, a.status) for a in answers if a.status >= 500 and a.status != 503]
    broken["202 without its Location"] = [
        a.tag for a in answers if a.kind == "execute" and a.status == 202
        and not (a.location and a.location.endswith((chaos.run_of(a) or {}).get("id") or "?"))]

    # … and no stream made an error up: it ended with its run's closing event, or without one
    streams = [a for a in answers if a.kind == "stream" and a.status == 200]
    broken["stream error made up"] = [(a.tag, e[2]) for a in streams for e in a.events
                                      if e[1] == "error" and isinstance(e[2].get("details"), str)]
    broken["stream closing event not its run's"] = [
        (a.tag, a.events[-1][1], by_tag[a.tag]["status"]) for a in streams
        if a.events and a.events[-1][1] in CLOSING_EVENTS and a.tag in by_tag
        and (a.events[-1][1] == "result") != (by_tag[a.tag]["status"] == "completed")]
    broken = {what: found for what, found in broken.items() if found}
    assert not broken, f"the contract broke under faults {stats}: {broken}"

    # … with the faults there all along: every kind, on every kind of call, and every client's work done
    throttles = stats["throttle_provisioned"] + stats["throttle_throttling"] + stats["throttle_cancelled_transaction"]
    assert throttles and stats["conflict_random"] + stats["conflict_overlap"], stats
    assert all(stats[kind] > 0 for kind in ("storm", "server_error", "surfaced", "guarded")), json.dumps(stats)
    kinds = Counter(a.kind for a in answers)
    assert kinds["stream"] >= 2 and kinds["approve"] and kinds["cancel"] and kinds["retry"], kinds
    assert any(a.kind == "execute" and a.status in (200, 202) for a in answers)


def expected_status(workflow: str) -> str:
    return {"thinking": "completed", "approved": "completed", "waiting": "cancelled", "failing": "failed"}[workflow]


def settled_runs(chaos: Chaos, give_up: float) -> list[dict[str, Any]]:
    """Every run of the tenant, once none is still going (or at `give_up`)."""
    store = chaos.runtime.store
    assert store is not None
    while True:
        with chaos.faults.suspended():
            runs = [store.get_run(TENANT, s.id).dump() for s in all_summaries(store)]
        going = [r for r in runs if r["status"] not in ("completed", "failed", "cancelled")
                 # an approval nobody decided (its client gave up) and a wait nobody cancelled stay open
                 and r["status"] != "waiting"]
        if not going or time.monotonic() >= give_up:
            return runs
        time.sleep(0.5)


def all_summaries(store: Any) -> list[Any]:
    summaries, after = [], None
    while True:
        page = store.list_runs(TENANT, workflow_id=None, status=None, search=None, limit=100, after=after, offset=0)
        summaries.extend(page.items)
        if not page.next_after:
            return summaries
        after = page.next_after


def logs_without_closing_event(chaos: Chaos, run_ids: list[str], give_up: float) -> list[str]:
    store = chaos.runtime.store
    assert store is not None
    while True:
        with chaos.faults.suspended():
            unclosed = [run_id for run_id in run_ids if not closed(store, run_id)]
        if not unclosed or time.monotonic() >= give_up:
            return unclosed
        time.sleep(0.5)


def closed(store: Any, run_id: str) -> bool:
    cursor, last = None, None
    while True:
        page = store.events_after(run_id, cursor, 100)
        if page:
            cursor, last = page[-1][0], page[-1][1]
        if len(page) < 100:
            return last in CLOSING_EVENTS
