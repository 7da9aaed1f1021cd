"""Following a run's event log (what each SSE response streams), against a scripted log."""

from __future__ import annotations

from types import SimpleNamespace

import anyio
import pytest
from workflow_runs.closing import REPAIR_CURSORS
from workflow_runs.errors import NotFound
from workflow_runs.log_reader import PAGE_SIZE
from workflow_runs.models import Status
from workflow_runs_stream.cursors import event_cursor
from workflow_runs_stream.follow import FollowPolicy, LogEvent, follow

POLICY = FollowPolicy(poll_min=0.05, poll_max=0.4, close_grace=1.0)


class ScriptedLog:
    """An event log whose contents the test appends to between polls; a fake clock moves with
    every sleep, so nothing waits for real."""

    def __init__(self, events: list[tuple[str, str, dict]] | None = None, status: str | None = "running",
                 changed_at: str = "2026-01-01T00:00:00.000Z"):
        self.events = list(events or [])
        self.status = status
        self.changed_at = changed_at
        self.queries: list[str | None] = []
        self.failures = 0
        self.sleeps: list[float] = []
        self.now = 0.0
        self.on_sleep = None  # called with the number of sleeps so far

    def events_after(self, run_id: str, cursor: str | None, limit: int = 100, *, consistent: bool = True):
        self.queries.append(cursor)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("throttled")
        return [e for e in self.events if cursor is None or e[0] > cursor][:limit]

    def run_state(self, run_id: str):
        return None if self.status is None else (self.status, self.changed_at)

    def get_run_record(self, run_id: str, tenant: str | None = None):
        if self.status is None:
            raise NotFound(f"workflow run {run_id} not found")
        return SimpleNamespace(status=Status(self.status), tenant="t-1")

    def get_run(self, tenant: str, run_id: str):
        from workflow_runs.models import WorkflowRun

        return WorkflowRun.model_validate({
            "id": run_id, "workflowId": "00000000-0000-4000-8000-000000000001", "workflowName": "w",
            "status": self.status, "inputs": [], "activityRuns": [],
            "createdAt": self.changed_at, "updatedAt": self.changed_at})

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))
        await anyio.lowlevel.checkpoint()

    def clock(self) -> float:
        return self.now


def event(seq: int, name: str = "workflow-run", closing: bool = False) -> tuple[str, str, dict]:
    # A closing event is the second event of a run's terminal record.
    return (event_cursor(str(seq), 1 if closing else 0, terminal=closing), name, {"content": {"status": "running"}})


def collect(log: ScriptedLog, after: str | None = None, limit: int = 1000) -> list[LogEvent]:
    async def run() -> list[LogEvent]:
        out = []
        async for e in follow(log, "r-1", after, POLICY, monotonic=log.clock, sleep=log.sleep):
            out.append(e)
            if len(out) >= limit:
                break
        return out

    return anyio.run(run)


def test_it_ends_right_after_the_closing_event():
    log = ScriptedLog([event(1), event(2, "result", closing=True), event(3, "activity-run")])
    assert [e.name for e in collect(log)] == ["workflow-run", "result"]


def test_a_full_page_is_followed_by_another_query_at_once():
    log = ScriptedLog([event(i) for i in range(1, PAGE_SIZE + 3)] + [event(999, "result", closing=True)])
    events = collect(log)
    assert len(events) == PAGE_SIZE + 3
    assert log.sleeps == []  # no pause between the pages


def test_idle_polls_back_off_to_the_maximum_and_speed_up_when_events_come():
    log = ScriptedLog([event(1)])

    def later(sleeps: int) -> None:
        if sleeps == 6:
            log.events.append(event(2))
        if sleeps == 8:
            log.events.append(event(3, "result", closing=True))

    log.on_sleep = later
    collect(log)
    # after the first event: min; idle: doubling up to max; after event 2: min again
    assert log.sleeps == [0.05, 0.05, 0.1, 0.2, 0.4, 0.4, 0.05, 0.05]


def test_resuming_after_the_closing_cursor_reads_nothing():
    log = ScriptedLog([event(1), event(2, "result", closing=True)])
    assert collect(log, after=event(2, closing=True)[0]) == []
    assert log.queries == []


def test_resuming_after_a_cursor_reads_only_what_follows():
    log = ScriptedLog([event(1), event(2), event(3, "error", closing=True)])
    assert [e.cursor for e in collect(log, after=event(1)[0])] == [event(2)[0], event(3, closing=True)[0]]
    assert log.queries[0] == event(1)[0]


def test_a_log_that_cannot_be_read_keeps_the_connection_and_ends_without_a_closing_event():
    # Given a store that stays busy for the whole life of the stream
    log = ScriptedLog([event(1)])
    log.failures = 10**6
    policy = FollowPolicy(poll_min=0.05, poll_max=0.4, close_grace=1.0, max_seconds=30.0)

    async def run() -> list[LogEvent]:
        return [e async for e in follow(log, "r-1", None, policy, monotonic=log.clock, sleep=log.sleep)]

    # Then it never sends an event (no `error` a client would take for the run's end) and
    # ends at its longest life, having read on at the idle pace at most
    assert anyio.run(run) == []
    assert log.now >= policy.max_seconds and len(log.queries) > 30 / 0.4
    assert max(log.sleeps) <= policy.poll_max


def test_a_passing_read_failure_is_retried_without_the_client_noticing():
    log = ScriptedLog([event(1), event(2, "result", closing=True)])
    log.failures = 3
    assert [e.name for e in collect(log)] == ["workflow-run", "result"]


def test_a_silent_log_of_a_missing_run_ends_with_a_string_error():
    log = ScriptedLog([event(1)], status=None)
    events = collect(log)
    assert [e.name for e in events] == ["workflow-run", "error"]
    assert "no longer exists" in events[-1].data["details"] and events[-1].cursor == event(1)[0]
    assert log.now >= POLICY.close_grace


@pytest.mark.parametrize(("status", "closing"), [("completed", "result"), ("failed", "error"),
                                                 ("cancelled", "error")])
def test_a_silent_log_of_an_ended_run_ends_with_the_closing_event_told_from_its_status(status, closing):
    # Given a log whose closing event never came (the projector's attempts ran out)
    from workflow_runs.models import utc_now

    log = ScriptedLog([event(1)], status=status, changed_at=utc_now())
    events = collect(log)
    # Then, one grace period after the log went idle, the stream ends from the run's status
    assert [e.name for e in events] == ["workflow-run", "workflow-run", closing]
    assert [e.cursor for e in events[1:]] == list(REPAIR_CURSORS)
    assert events[1].data == {"content": {"workflowRunId": "r-1", "status": status}}
    if closing == "result":
        assert events[-1].data["success"] is True and events[-1].data["workflowRun"]["status"] == status
    else:
        assert events[-1].data["details"]["status"] == status
    assert POLICY.close_grace <= log.now < 3 * POLICY.close_grace


def test_a_silent_log_of_a_run_still_going_keeps_waiting():
    log = ScriptedLog([event(1)], status="waiting")
    log.on_sleep = lambda n: log.events.append(event(2, "result", closing=True)) if n == 30 else None
    assert [e.name for e in collect(log)] == ["workflow-run", "result"]
    assert log.now > 3 * POLICY.close_grace


def test_it_ends_without_a_closing_event_at_its_longest_life_and_never_sleeps_past_it():
    # Given a run that keeps going (events trickle in, the last at 3 s), and a 2.5 s life
    log = ScriptedLog([event(1)])
    log.on_sleep = lambda n: log.events.append(event(n + 1)) if log.now < 3 else None
    policy = FollowPolicy(poll_min=0.05, poll_max=0.4, close_grace=1.0, max_seconds=2.5)

    async def run() -> list[LogEvent]:
        return [e async for e in follow(log, "r-1", None, policy, monotonic=log.clock, sleep=log.sleep)]

    events = anyio.run(run)

    # Then it stopped at 2.5 s on the dot, with what it had, and no `error` / `result`
    assert log.now == pytest.approx(2.5)
    assert events and all(e.name == "workflow-run" for e in events)
    # … and a resume after its last event delivers the rest
    rest = collect(log, after=events[-1].cursor, limit=len(log.events) - len(events))
    assert [e.cursor for e in events + rest] == [e[0] for e in log.events]


def test_its_longest_life_comes_from_the_settings():
    from workflow_runs.settings import Settings

    settings = Settings(runs_table="r", events_table="e", stream_max_seconds=120)
    assert FollowPolicy.from_settings(settings).max_seconds == 120
    assert Settings(runs_table="r", events_table="e").stream_max_seconds == 840
