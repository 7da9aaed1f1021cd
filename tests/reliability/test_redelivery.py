"""Express runs at least once: the same step invocation delivered twice, concurrently.

Both deliveries read the run before either opens the step (a barrier holds them there), so
both try to open the same attempt. The open is conditional on the attempt not existing:
one delivery runs the step and moves the run, the other ends without touching anything.
Checked against DynamoDB Local and its stream (what really happened, not what either side
believed)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from workflow_runs.secrets import get_sealer
from workflow_runs.store import RunStore
from workflow_runs_step_runner.runner import run_step
from workflow_runs_step_runner.steps import registry as default_registry

from tests.reliability.support import (
    QUIET,
    TWO_TRANSFORMS,
    attempts_per_step,
    create_run,
    put_workflow,
    run_status_changes,
)

pytestmark = pytest.mark.dynamodb_local


class _ReadsTogether:
    """The runner's store: after its read of the run, each delivery waits for the other's
    read, so both act on the same snapshot."""

    def __init__(self, store: RunStore, barrier: threading.Barrier):
        self._store, self._barrier = store, barrier

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name != "get_run_record":
            return attribute

        def get_run_record(*args: Any, **kwargs: Any) -> Any:
            record = attribute(*args, **kwargs)
            try:
                self._barrier.wait(10)
            except threading.BrokenBarrierError:
                pass  # a re-read after a lost race: the other delivery is past its read
            return record

        return get_run_record


class _CountingRegistry:
    def __init__(self) -> None:
        self.ran: Counter[str] = Counter()
        self._lock = threading.Lock()

    def get(self, type_name: str) -> Any:
        step_type = default_registry.get(type_name)
        outer = self

        class Counted:
            def run(self, ctx: Any) -> Any:
                with outer._lock:
                    outer.ran[ctx.step.id] += 1
                return step_type.run(ctx)

        return Counted()


def _deliver_twice(store: RunStore, run_id: str, registry: _CountingRegistry) -> list[dict[str, Any]]:
    barrier = threading.Barrier(2)
    replies: list[dict[str, Any]] = []
    step = {"settings": store.settings, "sealer": get_sealer(store.settings), "logger": QUIET, "registry": registry}

    def deliver() -> None:
        replies.append(run_step({"runId": run_id, "attempt": 0}, store=_ReadsTogether(store, barrier), **step))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    barrier.abort()
    return replies


@pytest.mark.parametrize("step_index", [0, 1], ids=["first step (scheduled → running)", "last step (→ completed)"])
def test_a_step_delivered_twice_concurrently_runs_once_and_moves_the_run_once(race_store: RunStore, step_index: int):
    # Given a two-step run at the step under test
    workflow_id = put_workflow(race_store, TWO_TRANSFORMS)
    run_id = create_run(race_store, workflow_id)
    quiet = {"settings": race_store.settings, "sealer": get_sealer(race_store.settings), "logger": QUIET}
    for _ in range(step_index):
        run_step({"runId": run_id, "attempt": 0}, store=race_store, **quiet)
    registry = _CountingRegistry()

    # When the same invocation of that step is delivered twice at once
    replies = _deliver_twice(race_store, run_id, registry)

    # Then the step ran once and wrote one activity run; the run moved once. (The losing
    # delivery may, after reading again, go on to the next step as a duplicate execution
    # would: that step too runs at most once.)
    step_id = TWO_TRANSFORMS[step_index]["id"]
    assert registry.ran[step_id] == 1 and max(registry.ran.values()) == 1
    assert attempts_per_step(race_store, run_id)[step_id] == [1]
    assert all(attempts == [1] for attempts in attempts_per_step(race_store, run_id).values())
    moves = [new for _, new in run_status_changes(race_store)[run_id]]
    assert moves in (["scheduled", "running"], ["scheduled", "running", "completed"])
    if step_index == 1:
        assert moves == ["scheduled", "running", "completed"]
    assert "done" in [r["next"] for r in replies]  # one delivery ended quietly
