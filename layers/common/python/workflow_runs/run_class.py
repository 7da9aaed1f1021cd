"""Which state machine runs a workflow: Standard or Express (docs/orchestration.md).

An Express execution lives at most five minutes and bills per request and duration; a
Standard one bills every state transition. A run goes Express when its workflow is bound
to end well inside the five minutes: the sum, over its steps, of the longest each can take
— wait seconds, a step's time bound × its attempts, the retry back-off between attempts —
is at most `EXPRESS_BUDGET_SECONDS`. The rest of the five minutes is margin for what the
bound leaves out (the store's own retries when DynamoDB is busy, Lambda cold starts).

The class is chosen once, when the run is created, stored on the run and never changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from .models import MAX_ATTEMPTS_CEILING, Step, llm_timeout_seconds
from .retry_rules import STEP_RETRY
from .settings import Settings
from .states import APPROVAL_STEP, EXPRESS, EXPRESS_MAX_SECONDS, STANDARD  # noqa: F401 - EXPRESS_MAX_SECONDS re-exported

EXPRESS_BUDGET_SECONDS = 240


# How long one attempt of a step type can take. `transform` and `fail` only compute; `http`
# and `llm` have their `timeoutSeconds` (the step enforces it) plus the step's own writes.
QUICK_STEP_SECONDS = 5.0


def attempt_bound_seconds(step: Step, settings: Settings) -> float:
    if step.type == "wait":
        return float(step.config.get("seconds") or 0)
    if step.type == "http":
        timeout = step.config.get("timeoutSeconds")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            timeout = settings.http_step_timeout_seconds
        return float(timeout) + QUICK_STEP_SECONDS
    if step.type == "llm":
        return llm_timeout_seconds(step) + QUICK_STEP_SECONDS
    if step.type == APPROVAL_STEP:
        return float(step.config.get("timeoutSeconds") or 0)
    return QUICK_STEP_SECONDS


def backoff_bound_seconds(attempts: int) -> float:
    """The longest the state machine waits between `attempts` attempts (full jitter draws
    from [0, interval], so the interval itself is the bound)."""
    return sum(STEP_RETRY.ceiling(n) for n in range(attempts - 1))


def bound_seconds(steps: Iterable[Step], settings: Settings) -> float:
    """The longest a run of these steps can take, as far as the workflow decides it."""
    total = 0.0
    for step in steps:
        attempts = 1 if step.type == "wait" else min(step.retry.max_attempts, MAX_ATTEMPTS_CEILING)
        total += attempt_bound_seconds(step, settings) * attempts + backoff_bound_seconds(attempts)
    return total


def choose(steps: Iterable[Step], settings: Settings) -> str:
    """`standard` or `express` for a new run, from `settings.orchestration`:
    `auto` picks Express when the run is bound to end within the budget."""
    steps = list(steps)
    if any(step.type == APPROVAL_STEP for step in steps):
        # A person's decision comes back through a task token, and Express has no callbacks
        # (.waitForTaskToken is Standard only): whatever ORCHESTRATION says.
        return STANDARD
    if settings.orchestration in (STANDARD, EXPRESS):
        return settings.orchestration
    return EXPRESS if bound_seconds(steps, settings) <= EXPRESS_BUDGET_SECONDS else STANDARD
