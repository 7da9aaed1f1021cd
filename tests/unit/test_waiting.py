"""The blocking execute's wait: woken by the run's closing event, paced like the stream
follower, and never reading more per waiting second than the status poll it replaced."""

from __future__ import annotations

from dataclasses import dataclass, field

from workflow_runs.log_reader import HOLD_MARGIN_SECONDS, PAGE_SIZE, Pacing
from workflow_runs.models import Status
from workflow_runs.waiting import quiet_steps_of, wait_for_end

PACING = Pacing(poll_min=0.05, poll_max=1.0, close_grace=10.0)


@dataclass
class ScriptedLog:
    """A run's event log whose events appear at given times on a fake clock."""

    timeline: list[tuple[float, str]]  # (when, event name), or (when, (event name, data))
    status: Status = Status.RUNNING
    now: float = 0.0
    reads: list[float] = field(default_factory=list)
    status_reads: list[float] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def events_after(self, run_id: str, cursor: str | None, limit: int = 100, *, consistent: bool = True) -> list[tuple[str, str, dict]]:
        self.reads.append(self.now)
        seen = [(f"{i:06d}", *(e if isinstance(e, tuple) else (e, {}))) for i, (when, e) in enumerate(self.timeline)
                if when <= self.now]
        return [e for e in seen if cursor is None or e[0] > cursor][:limit]

    def run_state(self, run_id: str) -> tuple[Status, str]:
        self.status_reads.append(self.now)
        return self.status, "2026-12-07T00:00:00+00:00"

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def wait(log: ScriptedLog, deadline: float, pacing: Pacing = PACING, quiet_steps: dict | None = None) -> bool:
    outcome = wait_for_end(log, "run-1", deadline, pacing, quiet_steps=quiet_steps, monotonic=log.monotonic,
                           sleep=log.sleep)
    return outcome.ended


def test_it_wakes_within_poll_min_of_the_closing_event_while_the_run_is_busy():
    # Given a run whose steps change every 0.2 s and that closes at 3.0 s
    timeline = [(0.2 * i, "activity-run") for i in range(15)] + [(3.0, "result")]
    log = ScriptedLog(timeline)
    # When the execute waits with 25 s left
    assert wait(log, deadline=25.0) is True
    # Then it noticed the close at most poll_min after it was written
    assert 3.0 <= log.now <= 3.0 + PACING.poll_min + 1e-9


def activity(status: str, run_id: str = "a-1") -> tuple[str, dict]:
    return ("activity-run", {"content": {"workflowRunId": "run-1", "activityRunId": run_id, "stepId": "s",
                                         "status": status, "attempt": 1}})


def test_a_step_quiet_for_seconds_is_read_at_the_fast_pace_so_its_end_is_seen_at_once():
    # Given a step that starts at 0 and stays silent (a model call, an HTTP request) until the
    # run ends at 7.3 s
    log = ScriptedLog([(0.0, activity("running")), (7.3, "result")])
    assert wait(log, deadline=25.0) is True
    # Then it was read every poll_min throughout, not backed off: the end was seen within poll_min
    assert set(log.sleeps) == {PACING.poll_min}
    assert 7.3 <= log.now <= 7.3 + PACING.poll_min + 1e-9


def test_a_parked_step_backs_the_reads_off_to_poll_max():
    # Given a step that runs, then waits (a person's decision) for the rest of the wait
    log = ScriptedLog([(0.0, activity("running")), (0.5, activity("waiting"))])
    assert wait(log, deadline=10.0) is False
    after_park = [s for t, s in zip(log.reads, log.sleeps, strict=False) if t > 0.5]
    # Then the reads back off ×2 to poll_max once it waits
    assert after_park[:6] == [0.05, 0.05, 0.1, 0.2, 0.4, 0.8] and max(after_park) == PACING.poll_max


def test_an_idle_log_is_read_ever_more_slowly_up_to_poll_max():
    log = ScriptedLog([])
    assert wait(log, deadline=6.0) is False
    assert log.sleeps[:6] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert max(log.sleeps) == PACING.poll_max
    assert log.now == 6.0  # it stops at the deadline, not after it


def test_a_full_page_is_followed_by_another_read_at_once():
    log = ScriptedLog([(0.0, "thinking")] * (PAGE_SIZE + 5) + [(0.0, "result")])
    assert wait(log, deadline=5.0) is True
    assert log.sleeps == [] and len(log.reads) == 2


def test_a_log_idle_past_the_grace_has_the_run_status_read_and_a_terminal_run_ends_the_wait():
    # Given a run that ended, but whose closing event never reaches the log (projection failed)
    log = ScriptedLog([(0.0, "workflow-run")], status=Status.COMPLETED)
    assert wait(log, deadline=25.0) is True
    assert len(log.status_reads) == 1
    assert PACING.close_grace <= log.now <= PACING.close_grace + PACING.poll_max + 0.05


def test_a_waiting_second_costs_no_more_reads_than_the_status_poll_it_replaced():
    # The poll it replaced: a status read after pauses of 20 ms growing ×1.5 to 0.5 s.
    def status_poll_reads(seconds: float) -> int:
        clock, pause, reads = 0.0, 0.02, 0
        while clock < seconds:
            clock += min(pause, seconds - clock)
            pause = min(pause * 1.5, 0.5)
            reads += 1
        return reads

    for seconds in (1.0, 5.0, 20.0):
        log = ScriptedLog([])
        wait(log, deadline=seconds)
        assert len(log.reads) + len(log.status_reads) < status_poll_reads(seconds), seconds


def test_pacing_follows_the_stream_settings():
    @dataclass
    class S:
        sse_poll_min_seconds: float = 0.02
        sse_poll_max_seconds: float = 0.5

    pacing = Pacing.from_settings(S())
    assert (pacing.poll_min, pacing.poll_max, pacing.close_grace) == (0.02, 0.5, 5.0)
    # idle: ×2 per empty read from poll_min, up to poll_max
    assert [pacing.idle_backoff.delay(k) for k in range(6)] == [0.02, 0.04, 0.08, 0.16, 0.32, 0.5]


def test_a_fixed_wait_step_is_waited_out_without_reads_and_its_end_seen_at_once():
    # Given a run that waits 5 s in step "pause" (its `waiting` event at 0.1 s), then ends
    waiting = ("activity-run", {"content": {"stepId": "pause", "status": "waiting"}})
    log = ScriptedLog([(0.0, "workflow-run"), (0.1, waiting), (5.1, "activity-run"), (5.12, "result")])
    # When the execute waits, knowing "pause" waits 5 s
    assert wait(log, deadline=25.0, quiet_steps={"pause": 5.0}) is True
    # Then it read nothing during the wait, and saw the end within poll_min + the hold margin
    assert not [t for t in log.reads if 0.2 < t < 5.1 - HOLD_MARGIN_SECONDS]
    assert log.now <= 5.12 + PACING.poll_min + 1e-9
    # … for fewer reads than backing off through the wait would have cost
    backing_off = ScriptedLog(list(log.timeline))
    assert wait(backing_off, deadline=25.0) is True
    assert len(log.reads) < len(backing_off.reads) and log.now < backing_off.now


def test_a_hold_never_runs_past_the_deadline():
    waiting = ("activity-run", {"content": {"stepId": "pause", "status": "waiting"}})
    log = ScriptedLog([(0.0, waiting)])
    assert wait(log, deadline=2.0, quiet_steps={"pause": 60.0}) is False
    assert log.now == 2.0


def test_the_closing_result_carries_the_run_so_no_read_follows():
    run = {"id": "run-1", "status": "completed"}
    log = ScriptedLog([(0.0, ("result", {"success": True, "workflowRun": run}))])
    outcome = wait_for_end(log, "run-1", 5.0, PACING, monotonic=log.monotonic, sleep=log.sleep)
    assert outcome.ended and outcome.run == run


def test_only_wait_steps_are_quiet():
    from workflow_runs.models import WorkflowDefinition

    definition = WorkflowDefinition.model_validate({"name": "w", "steps": [
        {"id": "a", "type": "wait", "config": {"seconds": 3}},
        {"id": "c", "type": "transform", "config": {"output": "x"}}]})
    assert quiet_steps_of(definition.steps) == {"a": 3.0}


def test_a_step_waiting_for_a_person_ends_the_wait_at_once_without_an_end():
    # Given a run whose approval step starts waiting at 0.4 s (its other steps busy before)
    timeline = [(0.1, "activity-run"), (0.4, ("activity-run", {"content": {"stepId": "review", "status": "waiting"}}))]
    log = ScriptedLog(timeline)

    outcome = wait_for_end(log, "run-1", 25.0, PACING, parked_steps={"review"}, monotonic=log.monotonic,
                           sleep=log.sleep)

    # Then the waiter stops soon after the waiting event, not at the deadline, and says not ended
    assert outcome.ended is False and outcome.run is None
    assert log.now <= 0.4 + PACING.poll_max  # read at the follower's pace, answered at the first read after it


def test_a_step_not_parked_that_waits_does_not_end_the_wait():
    timeline = [(0.4, ("activity-run", {"content": {"stepId": "pause", "status": "waiting"}})), (2.0, "result")]
    log = ScriptedLog(timeline)

    outcome = wait_for_end(log, "run-1", 25.0, PACING, parked_steps={"review"}, monotonic=log.monotonic,
                           sleep=log.sleep)

    assert outcome.ended is True and 2.0 <= log.now < 2.0 + 2 * PACING.poll_max


def test_parked_steps_are_the_approval_steps():
    from types import SimpleNamespace

    from workflow_runs.waiting import parked_steps_of

    steps = [SimpleNamespace(id="a", type="transform"), SimpleNamespace(id="r", type="approval"),
             SimpleNamespace(id="w", type="wait")]
    assert parked_steps_of(steps) == {"r"}
