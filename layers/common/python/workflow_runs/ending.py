"""How a run ends from outside its steps, and what to do when a write loses a race.

Every status write is conditional on the status we read; losing means someone else moved
the run (a step finished, a cancel, the reconciler). The rule is always the same: read
again and decide from what is stored now, never overwrite it. A conflict or a throttle is
not a lost race (the store retries those, then raises `Unavailable`), so these loops only
ever turn on real changes, and a few rounds settle them.

Used by the cancel (service), the reconciler, and the step runner's Catch path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .errors import NotFound, TransitionRejected
from .models import RunError, Status
from .store import RunRecord

T = TypeVar("T")
LOST_RACE_ROUNDS = 5


class LostRaces(RuntimeError):
    """The run kept changing through every round (never seen but for a bug)."""


def retry_lost_races(attempt: Callable[[], T], rounds: int = LOST_RACE_ROUNDS) -> T:
    """Call `attempt` (which reads the run and writes conditionally) until it does not lose."""
    for _ in range(rounds):
        try:
            return attempt()
        except TransitionRejected:
            continue
    raise LostRaces(f"the run kept changing through {rounds} rounds")


class EndingStore(Protocol):
    def get_run_record(self, run_id: str, tenant: str | None = None) -> RunRecord: ...

    def end_run(
        self, record: RunRecord, status: Status, *, error: RunError | None = None, cancel_reason: str | None = None
    ) -> RunRecord: ...


@dataclass(frozen=True)
class Ending:
    """What ending a run from outside did: `before` is the status found (None: no such
    run), `record` the run after the call; `changed` when this call ended it."""

    before: Status | None
    record: RunRecord | None
    changed: bool


def end_from_outside(
    store: EndingStore,
    run_id: str,
    status: Status,
    *,
    tenant: str | None = None,
    error: Callable[[RunRecord], RunError | None] = lambda _: None,
    cancel_reason: str | None = None,
) -> Ending:
    """End a run that is not terminal yet with `status` (cancelled or failed): its open
    steps close first, then the run, in the store's two fenced writes. A run that is
    terminal already (or missing) is left as it is and reported."""

    def attempt() -> Ending:
        try:
            record = store.get_run_record(run_id, tenant)
        except NotFound:
            return Ending(before=None, record=None, changed=False)
        if record.status.terminal:
            return Ending(before=record.status, record=record, changed=False)
        ended = store.end_run(record, status, error=error(record), cancel_reason=cancel_reason)
        return Ending(before=record.status, record=ended, changed=True)

    return retry_lost_races(attempt)
