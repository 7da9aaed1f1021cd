"""Cancel versus complete, raced for real on DynamoDB Local.

Each race: a two-step run whose first step has completed; one thread runs its last step
through the real step runner (`run_step`, the Lambda's path), another ends it otherwise —
a cancel through `RunService.cancel` (the API's path), or the reconciler settling an
execution that timed out or was stopped while that step still ran (a late Lambda). The
other side is released at a random point between the runner's store calls, so the races
cover every window; twenty run at once.

Afterwards, for every run: exactly one terminal status change happened (read back from the
runs table's DynamoDB stream, not from what either side believed), what each side reported
agrees with it, no activity run is left open or recorded twice, and the kept counters equal
a recount of the runs.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from workflow_runs.models import Status
from workflow_runs.secrets import get_sealer
from workflow_runs.service import CancelRequest, RunService
from workflow_runs.store import RunStore
from workflow_runs_step_runner.reconciler import settle
from workflow_runs_step_runner.runner import run_step

from tests.reliability.support import (
    QUIET,
    TENANT,
    TWO_TRANSFORMS,
    StoppableOrchestrator,
    assert_counters_match,
    attempts_per_step,
    create_run,
    open_activities,
    put_workflow,
    run_status_changes,
    soak,
    terminal_moves,
)

pytestmark = pytest.mark.dynamodb_local

CANCEL_RACES = soak(100, 1000)
RECONCILER_RACES = soak(20, 300)
CONCURRENCY = 20
# The last step's store calls: read the run, open the activity, close it, complete the run.
RUNNER_CALLS = 4
MAX_JITTER_SECONDS = 0.005

# The other side of a race: ends the run its own way; answers what it says it did.
Ender = Callable[[RunStore, str], str]


@dataclass
class Race:
    run_id: str
    release_before_call: int
    said: str | None = None  # what the other side reported
    runner_reply: str | None = None


class ReleasingStore:
    """The runner's store, unchanged, except that just before its `release_before`-th call
    it lets the other side go: from there both run concurrently. Drawing that point at
    random spreads the races over every window between the runner's reads and writes (on a
    busy 2-core machine a time-based jitter alone would put nearly all of them in one)."""

    def __init__(self, store: RunStore, release_before: int, go: threading.Event):
        self._store, self._release_before, self._go, self._calls = store, release_before, go, 0

    def __getattr__(self, name: str):
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            if self._calls == self._release_before:
                self._go.set()
            self._calls += 1
            return attribute(*args, **kwargs)

        return call


def _race(store: RunStore, workflow_id: str, ender: Ender, seed: int) -> Race:
    rng = random.Random(seed)
    step = {"settings": store.settings, "sealer": get_sealer(store.settings), "logger": QUIET}
    run_id = create_run(store, workflow_id)
    assert run_step({"runId": run_id, "attempt": 0}, store=store, **step)["next"] == "step"  # first step done
    race = Race(run_id, release_before_call=rng.randrange(RUNNER_CALLS + 1))
    go = threading.Event()

    def other_side() -> None:
        assert go.wait(30)
        time.sleep(rng.uniform(0, MAX_JITTER_SECONDS))
        race.said = ender(store, run_id)

    other = threading.Thread(target=other_side, name=f"ender-{seed}")
    other.start()
    runner_store = ReleasingStore(store, race.release_before_call, go)
    race.runner_reply = run_step({"runId": run_id, "attempt": 0}, store=runner_store, **step)["next"]
    go.set()  # the runner made fewer calls than drawn (it lost early)
    other.join(60)
    assert not other.is_alive()
    return race


def _run_races(store: RunStore, ender: Ender, count: int) -> tuple[str, list[Race]]:
    workflow_id = put_workflow(store, TWO_TRANSFORMS)
    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="race") as pool:
        races = list(pool.map(lambda seed: _race(store, workflow_id, ender, seed), range(count)))
    return workflow_id, races


def _check(store: RunStore, workflow_id: str, races: list[Race],
           agrees: Callable[[str | None, Status], bool], ended_as: Status) -> Counter[str]:
    """Every invariant of a finished set of races; returns how the runs ended."""
    changes = run_status_changes(store)
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    for race in races:
        moves = terminal_moves(changes.get(race.run_id, []))
        final = store.get_run_record(race.run_id).run
        outcomes[final.status.value] += 1
        # exactly one terminal change, the one that stands
        if len(moves) != 1 or moves[0] != final.status.value:
            problems.append(f"{race.run_id}: terminal moves {moves}, final {final.status.value}")
        if final.status not in (Status.COMPLETED, ended_as):
            problems.append(f"{race.run_id}: ended {final.status.value}")
        # what the other side reported agrees with what happened
        if not agrees(race.said, final.status):
            problems.append(f"{race.run_id}: the other side said {race.said}, the run is {final.status.value}")
        # no activity run left open, none recorded twice
        if open_activities(store, race.run_id):
            problems.append(f"{race.run_id} ({final.status.value}): open {open_activities(store, race.run_id)}")
        if any(len(a) != len(set(a)) for a in attempts_per_step(store, race.run_id).values()):
            problems.append(f"{race.run_id}: an attempt recorded twice {attempts_per_step(store, race.run_id)}")
    assert problems == [], "\n".join(problems[:20])
    # the dashboard's counters equal a recount of the runs
    counted = assert_counters_match(store, workflow_id, [r.run_id for r in races])
    assert counted["completed"] + counted[ended_as.value] == len(races)
    return outcomes


def _cancel(service: RunService) -> Ender:
    def ender(store: RunStore, run_id: str) -> str:
        (result,) = service.cancel(TENANT, CancelRequest(run_ids=[run_id], reason="race"))
        return result.status

    return ender


@pytest.mark.timeout(soak(110, 900))
def test_cancel_racing_the_last_step_ends_each_run_in_exactly_one_terminal_status(race_store: RunStore):
    # Given a service that cancels the way the API does
    service = RunService(race_store, StoppableOrchestrator(), race_store.settings)

    # When CANCEL_RACES cancels race CANCEL_RACES last steps, twenty at a time
    workflow_id, races = _run_races(race_store, _cancel(service), CANCEL_RACES)

    # Then each run ended once, as the side that won says, with nothing open and exact counts
    def agrees(said: str | None, final: Status) -> bool:
        return said == ("cancelled" if final is Status.CANCELLED else "already_completed")

    outcomes = _check(race_store, workflow_id, races, agrees, Status.CANCELLED)
    print(f"\n{CANCEL_RACES} cancel/complete races: {dict(outcomes)}")
    for race in races:
        run = race_store.get_run_record(race.run_id).run
        if run.status is Status.CANCELLED:
            assert (run.cancel_reason, run.error) == ("race", None)


@pytest.mark.timeout(soak(60, 600))
@pytest.mark.parametrize(("execution_status", "ended_as"), [
    ("TIMED_OUT", Status.FAILED),
    ("ABORTED", Status.CANCELLED),
])
def test_reconciler_racing_a_late_last_step_ends_each_run_in_exactly_one_terminal_status(
        race_store: RunStore, execution_status: str, ended_as: Status):
    # Given executions that ended (timed out, or stopped from the console) while their
    # Lambda still runs the last step — StopExecution does not stop a running Lambda
    def reconcile(store: RunStore, run_id: str) -> str:
        return "settled" if settle(store, run_id, execution_status, log=QUIET) else "unchanged"

    # When the reconciler settles each one while that step finishes
    workflow_id, races = _run_races(race_store, reconcile, RECONCILER_RACES)

    # Then each run ended once, as the side that won says, with nothing open and exact counts
    def agrees(said: str | None, final: Status) -> bool:
        return said == ("settled" if final is ended_as else "unchanged")

    outcomes = _check(race_store, workflow_id, races, agrees, ended_as)
    print(f"\n{RECONCILER_RACES} {execution_status} reconciler/complete races: {dict(outcomes)}")


class _PausedAfterRead:
    """A store that, just before its second call (the first write after reading the run),
    runs `hook` once: the seam that holds the other side in its read-then-write window."""

    def __init__(self, store: RunStore, hook: Callable[[], None]):
        self._store, self._hook, self._calls = store, hook, 0

    def __getattr__(self, name: str):
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            self._calls += 1
            if self._calls == 2:
                self._hook()
            return attribute(*args, **kwargs)

        return call


class _OpensWhenTold:
    """The runner's store: its `put_activity` waits for `go`, writes, signals `opened`, and
    returns only once `ended` is set (the step runs after the other side's write)."""

    def __init__(self, store: RunStore, go: threading.Event, opened: threading.Event, ended: threading.Event):
        self._store, self._go, self._opened, self._ended = store, go, opened, ended

    def __getattr__(self, name: str):
        attribute = getattr(self._store, name)
        if name != "put_activity":
            return attribute

        def put_activity(*args, **kwargs):
            self._go.wait(10)
            try:
                return attribute(*args, **kwargs)
            finally:
                self._opened.set()
                self._ended.wait(10)

        return put_activity


@pytest.mark.parametrize("ender", [
    "cancel",
    "reconciler ABORTED",
    "reconciler TIMED_OUT",
])
def test_an_activity_opened_between_the_enders_read_and_write_is_closed(race_store: RunStore, ender: str):
    # Given a run whose first step is done, and a side that ends it, held after its read of the
    # run (the last step not yet started) and before its write
    step = {"settings": race_store.settings, "sealer": get_sealer(race_store.settings), "logger": QUIET}
    workflow_id = put_workflow(race_store, TWO_TRANSFORMS)
    run_id = create_run(race_store, workflow_id)
    run_step({"runId": run_id, "attempt": 0}, store=race_store, **step)
    go, opened, ended = threading.Event(), threading.Event(), threading.Event()
    runner = threading.Thread(target=run_step, args=({"runId": run_id, "attempt": 0},),
                              kwargs={"store": _OpensWhenTold(race_store, go, opened, ended), **step})

    def runner_opens_its_activity_now() -> None:
        go.set()
        assert opened.wait(10)

    held = _PausedAfterRead(race_store, runner_opens_its_activity_now)
    runner.start()

    # When the runner opens the last step's activity run in that window, then the end lands
    if ender == "cancel":
        service = RunService(held, StoppableOrchestrator(), race_store.settings)
        (result,) = service.cancel(TENANT, CancelRequest(run_ids=[run_id], reason="window"))
        assert result.status == "cancelled"
    else:
        assert settle(held, run_id, ender.split()[1], log=QUIET)
    ended.set()
    runner.join(10)

    # Then the run ended and that activity run is closed, not left running forever (the
    # runner's own closing write is refused: the run is terminal)
    assert race_store.run_status(run_id).terminal
    assert open_activities(race_store, run_id) == []
    activities = [(a.step_id, a.status.value) for a in race_store.get_run_record(run_id).run.activity_runs]
    assert activities[0] == ("first", "completed") and activities[1][0] == "last"
