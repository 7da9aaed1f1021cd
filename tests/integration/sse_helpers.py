"""Helpers of the SSE suites: an app under uvicorn in a thread, an SSE parser over httpx,
runs written through the store the way the step runner writes them, and an orchestrator
that plays such a script when a run is started."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
import uvicorn
from workflow_runs.models import ActivityRun, RunError, Status, WorkflowDefinition, utc_now
from workflow_runs.store import RunRecord, RunStore
from workflow_runs_dev.dynamodb_local import free_port

TENANT = "acme"
OTHER_TENANT = "globex"
HEADERS = {"X-Tenant-Id": TENANT}
RUNS = "/api/v1/workflow-runs"


# ------------------------------------------------------------------ a server in a thread


class ServerThread:
    """An ASGI app served by uvicorn on a free loopback port, in a daemon thread."""

    def __init__(self, app: Any):
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=1, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


# ------------------------------------------------------------------ reading SSE


@dataclass
class Frame:
    event: str
    data: Any
    id: str | None

    @property
    def content(self) -> Any:
        return self.data.get("content") if isinstance(self.data, dict) else None


def parse_frames(lines: Iterable[str]) -> Iterator[Frame]:
    """SSE as the spec parses it: fields until a blank line; comments skipped."""
    fields: dict[str, list[str]] = {}
    for line in lines:
        if line == "":
            if fields:
                data = "\n".join(fields.get("data", []))
                yield Frame(
                    event=(fields.get("event") or ["message"])[-1],
                    data=json.loads(data) if data else None,
                    id=(fields.get("id") or [None])[-1],
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))


def read_stream(client: httpx.Client, method: str, url: str, *, until: Callable[[list[Frame]], bool] | None = None,
                **kwargs: Any) -> tuple[httpx.Response, list[Frame]]:
    """Every frame of a response, to its end (or until `until(frames)` holds: then the
    client hangs up). Pings included."""
    frames: list[Frame] = []
    with client.stream(method, url, **kwargs) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            for frame in parse_frames(response.iter_lines()):
                frames.append(frame)
                if until is not None and until(frames):
                    break
        else:
            response.read()
    return response, frames


def events_of(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.event != "ping"]


def shape(frames: list[Frame]) -> list[tuple]:
    """What a test compares: event names with their status-bearing content."""
    out: list[tuple] = []
    for f in events_of(frames):
        if f.event == "workflow-run":
            out.append((f.event, f.content["status"]))
        elif f.event == "activity-run":
            out.append((f.event, f.content["stepId"], f.content["status"], f.content["attempt"]))
        elif f.event == "thinking":
            out.append((f.event, f.data["stepId"], f.data["content"]))
        elif f.event == "result":
            out.append((f.event, f.data["workflowRun"]["status"]))
        else:
            out.append((f.event, f.data.get("error")))
    return out


# ------------------------------------------------------------------ runs, written as the runner would


def workflow(steps: list[dict[str, Any]], name: str = "Summarise") -> WorkflowDefinition:
    return WorkflowDefinition.model_validate(
        {"name": name, "inputs": [{"name": "topic", "type": "string", "required": False}], "steps": steps}
    )


TWO_STEPS = [
    {"id": "fetch", "name": "Fetch", "type": "transform", "config": {"output": "x"}},
    {"id": "summarise", "name": "Summarise", "type": "transform", "config": {"output": "y"}},
]
LLM_STEP = [{"id": "think", "name": "Think", "type": "llm", "config": {"prompt": "why?"}}]


class RunWriter:
    """Drives one run's items through the store, the writes the step runner makes."""

    def __init__(self, store: RunStore, run_id: str, pause: float = 0.0):
        self.store = store
        self.run_id = run_id
        self.pause = pause
        self.record: RunRecord = store.get_run_record(run_id)
        self.index = {s.id: i for i, s in enumerate(self.record.steps)}

    def _beat(self) -> None:
        if self.pause:
            time.sleep(self.pause)

    def status(self, status: Status, **kwargs: Any) -> None:
        self._beat()
        self.record = self.store.transition_run(self.record, status, **kwargs)

    def start_step(self, step_id: str, attempt: int = 1) -> ActivityRun:
        self._beat()
        now = utc_now()
        step = self.record.steps[self.index[step_id]]
        activity = ActivityRun(id=str(uuid.uuid4()), step_id=step_id, step_name=step.name, status=Status.RUNNING,
                               attempt=attempt, created_at=now, updated_at=now)
        assert self.store.put_activity(self.run_id, self.index[step_id], activity)
        return activity

    def end_step(self, activity: ActivityRun, status: Status, outputs: dict | None = None) -> ActivityRun:
        self._beat()
        ended = activity.model_copy(update={"status": status, "outputs": outputs, "updated_at": utc_now()})
        assert self.store.finish_activity(self.run_id, self.index[activity.step_id], ended, [activity.status])
        return ended

    def think(self, activity: ActivityRun, seq: int, text: str) -> None:
        self._beat()
        self.store.put_thinking(self.run_id, activity.id, activity.step_id, seq, text)


def script_completed(w: RunWriter) -> None:
    w.status(Status.RUNNING)
    for step in ("fetch", "summarise"):
        activity = w.start_step(step)
        w.end_step(activity, Status.COMPLETED, {"step": step})
    w.status(Status.COMPLETED)


def script_failed(w: RunWriter) -> None:
    w.status(Status.RUNNING)
    activity = w.start_step("fetch")
    w.end_step(activity, Status.FAILED)
    w.status(Status.FAILED, error=RunError(message="fetch said no", step_id="fetch"))


def script_thinking(w: RunWriter) -> None:
    w.status(Status.RUNNING)
    activity = w.start_step("think")
    for seq, text in enumerate(["Reading the prompt. ", "Weighing it. ", "Answering."], start=1):
        w.think(activity, seq, text)
    w.end_step(activity, Status.COMPLETED, {"text": "42"})
    w.status(Status.COMPLETED)


def script_hangs(w: RunWriter) -> None:
    """Starts its first step and stays in it (until cancelled)."""
    w.status(Status.RUNNING)
    w.start_step("fetch")


EXPECTED_COMPLETED = [
    ("workflow-run", "scheduled"),
    ("workflow-run", "running"),
    ("activity-run", "fetch", "running", 1),
    ("activity-run", "fetch", "completed", 1),
    ("activity-run", "summarise", "running", 1),
    ("activity-run", "summarise", "completed", 1),
    ("workflow-run", "completed"),
    ("result", "completed"),
]


@dataclass
class ScriptedOrchestrator:
    """The orchestrator port, playing a script per run in a thread instead of a state machine.
    The run's workflow picks the script (`scripts`); by default a run completes."""

    store: RunStore
    scripts: dict[str, Callable[[RunWriter], None]] = field(default_factory=dict)
    pause: float = 0.0
    started: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, run_id: str, orchestration: str = "standard") -> None:
        self.started.append(run_id)
        thread = threading.Thread(target=self._play, args=(run_id,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _play(self, run_id: str) -> None:
        writer = RunWriter(self.store, run_id, self.pause)
        self.scripts.get(writer.record.run.workflow_id, script_completed)(writer)

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = "standard") -> bool:
        return run_id in self.started

    def describe(self, run_id: str) -> str | None:
        return "RUNNING" if run_id in self.started else None

    def join(self, timeout: float = 10.0) -> None:
        for thread in self._threads:
            thread.join(timeout)


class CountingLog:
    """The store as the SSE app sees it, counting the event-log polls per run."""

    def __init__(self, store: RunStore):
        self._store = store
        self._lock = threading.Lock()
        self.polls: dict[str, int] = {}

    def events_after(self, run_id: str, cursor: str | None, limit: int = 100, *, consistent: bool = True) -> list:
        with self._lock:
            self.polls[run_id] = self.polls.get(run_id, 0) + 1
        return self._store.events_after(run_id, cursor, limit, consistent=consistent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
