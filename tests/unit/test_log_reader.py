"""The one event-log reader (blocking wait and SSE follower): fast while a step runs,
backing off while the run is parked, and never skipping an event on an eventually
consistent read."""

from __future__ import annotations

from workflow_runs.log_reader import LogReader, Pacing, read_page

PACING = Pacing(poll_min=0.05, poll_max=1.0, close_grace=10.0)


def activity(cursor: str, status: str) -> tuple[str, str, dict]:
    return (cursor, "activity-run", {"content": {"workflowRunId": "r", "activityRunId": "a-1", "stepId": "s",
                                                 "status": status, "attempt": 1}})


def idle_pauses(reader: LogReader, reads: int) -> list[float]:
    pauses = []
    for i in range(reads):
        reader.take([], float(i))
        pauses.append(reader.pause(float(i)))
    return pauses


def test_while_a_step_runs_every_read_is_fast_and_consistent():
    reader = LogReader(PACING)
    reader.take([activity("1", "running")], 0.0)
    assert idle_pauses(reader, 30) == [PACING.poll_min] * 30
    assert reader.stepping and reader.consistent


def test_once_the_step_waits_reads_back_off_and_turn_eventually_consistent():
    reader = LogReader(PACING)
    reader.take([activity("1", "running"), activity("2", "waiting")], 0.0)
    assert not reader.stepping and reader.pause(0.0) == PACING.poll_min
    assert idle_pauses(reader, 7) == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert reader.consistent is False


class Replicas:
    """An event log whose eventually consistent reads trail the leader by one event."""

    def __init__(self, events: list[tuple[str, str, dict]]):
        self.events = events
        self.reads: list[bool] = []

    def events_after(self, run_id, cursor, limit=100, *, consistent=True):
        self.reads.append(consistent)
        visible = self.events if consistent else self.events[:-1]
        return [e for e in visible if cursor is None or e[0] > cursor][:limit]

    def run_state(self, run_id):
        return None


def test_an_eventually_consistent_page_with_events_is_read_again_consistently_before_the_cursor_moves():
    # Given a parked reader (its reads are eventually consistent) and a log whose replica lags
    reader = LogReader(PACING, cursor="1")
    reader.take([activity("1", "waiting")], 0.0)
    reader.take([], 1.0)
    log = Replicas([activity("1", "waiting"), activity("2", "running"), activity("3", "completed")])
    # When it reads
    page = reader.take(read_page(log, "r", reader), 2.0)
    # Then what it acts on is the consistent read: both new events, none skipped
    assert log.reads == [False, True]
    assert [cursor for cursor, _, _ in page] == ["2", "3"] and reader.cursor == "3"
