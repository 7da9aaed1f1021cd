"""The vocabulary every part of a run's life shares, with no framework in it.

Statuses and their allowed moves, the SSE event names (and which of them close a stream),
and the step runner's answers to the state machine (`next`). The runner, the projector,
the stream follower, the reconciler and the local orchestrator import these instead of
spelling the strings again; the projector and the follower stay free of pydantic.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal, get_args


class Status(str, Enum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    WAITING = "waiting"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
NON_TERMINAL = tuple(s for s in Status if s not in TERMINAL)
STATUS_VALUES = frozenset(s.value for s in Status)
TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)

# A terminal status never changes; every other move is listed here.
ALLOWED_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.SCHEDULED: frozenset({Status.RUNNING, Status.WAITING, Status.FAILED, Status.CANCELLED}),
    Status.RUNNING: frozenset({Status.WAITING, Status.COMPLETED, Status.FAILED, Status.CANCELLED}),
    Status.WAITING: frozenset({Status.RUNNING, Status.COMPLETED, Status.FAILED, Status.CANCELLED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def can_transition(old: Status, new: Status) -> bool:
    return new in ALLOWED_TRANSITIONS[old]


def sources_of(new: Status) -> tuple[Status, ...]:
    """The statuses from which `new` may be reached (the condition of a status write)."""
    return tuple(s for s in Status if new in ALLOWED_TRANSITIONS[s])


# --- SSE event names ---------------------------------------------------------------------
EVENT_RUN = "workflow-run"
EVENT_ACTIVITY = "activity-run"
EVENT_THINKING = "thinking"
EVENT_RESULT = "result"
EVENT_ERROR = "error"
# A stream ends after one of these: the run is terminal.
CLOSING_EVENTS = frozenset({EVENT_RESULT, EVENT_ERROR})

# --- run classes: which state machine executes a run (docs/orchestration.md) ------------
RunClass = Literal["standard", "express"]
RUN_CLASSES: tuple[RunClass, ...] = get_args(RunClass)
STANDARD, EXPRESS = RUN_CLASSES
# What the reconciler's sweep knows of an Express run still open after any Express execution
# could have lived (no status events, no DescribeExecution by name): its execution is over.
EXPRESS_ENDED = "EXPRESS_ENDED"

# --- the step runner's answer to the state machine (`next`; infra/state_machine.asl.json) --
NEXT_STEP = "step"
NEXT_WAIT = "wait"
NEXT_DONE = "done"
NEXT_FAILED = "failed"
# The next step is an approval: the state machine parks it with a task token (Approval state).
NEXT_APPROVAL = "approval"
# The step runner's actions besides running the next step (the event's `action`).
ACTION_FAIL = "fail"
ACTION_PARK_APPROVAL = "approval"
ACTION_APPROVAL_TIMED_OUT = "approval-timeout"
APPROVAL_STEP = "approval"
WAIT_STEP = "wait"

# AWS: an Express execution runs at most five minutes (here so the reconciler needs no pydantic).
EXPRESS_MAX_SECONDS = 300
