"""How a failed step invocation is retried: the one home of the rule.

The state machine's retriers for these errors (infra/state_machine.asl.json) are generated
from here (`python -m infra.asl`; a test fails while the file differs), the local
orchestrator follows them in-process, and the run-class choice bounds a run's retries with
them. Step Functions' arithmetic: retry n (0-based) waits min(IntervalSeconds·BackoffRate^n,
MaxDelaySeconds), with full jitter a uniform draw below that; `MaxAttempts` counts retries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """One ASL retrier. `max_attempts` counts retries, as the ASL's MaxAttempts does."""

    errors: tuple[str, ...]
    interval_seconds: float
    backoff_rate: float
    max_delay_seconds: float
    max_attempts: int
    jitter: str = "FULL"

    def matches(self, error_name: str) -> bool:
        return "States.ALL" in self.errors or error_name in self.errors

    def ceiling(self, retry_count: int) -> float:
        """The longest wait before retry number `retry_count + 1`."""
        return min(self.interval_seconds * self.backoff_rate**retry_count, self.max_delay_seconds)

    def delay(self, retry_count: int, rng: random.Random) -> float:
        """Seconds before retry number `retry_count + 1` (how Step Functions computes it)."""
        interval = self.ceiling(retry_count)
        return rng.uniform(0, interval) if self.jitter == "FULL" else interval

    def asl(self) -> dict[str, Any]:
        """The retrier's fields as the ASL spells them (numbers as integers where whole)."""
        def number(value: float) -> int | float:
            return int(value) if float(value).is_integer() else value

        return {"IntervalSeconds": number(self.interval_seconds), "BackoffRate": number(self.backoff_rate),
                "MaxDelaySeconds": number(self.max_delay_seconds), "MaxAttempts": self.max_attempts,
                "JitterStrategy": self.jitter}


# A step's own retryable failure: MaxAttempts 9 retries = the ceiling of 10 attempts (the
# runner stops raising it at the step's own retry.maxAttempts).
STEP_RETRY = RetryPolicy(("StepRetryableError",), 2, 2.0, 300, 9)
# The store stayed busy (throttled or contended) through its own retries: nothing was
# written, so the invocation is simply made again.
STORE_RETRY = RetryPolicy(("Unavailable",), 1, 2.0, 20, 6)
RUN_STEP_RETRIERS = (STEP_RETRY, STORE_RETRY)
# Recording a failure (the Catch's task) and an approval's timeout: whatever failed, again.
RECORD_FAILURE_RETRY = RetryPolicy(("States.ALL",), 1, 2.0, 30, 3)

# The ASL's retriers made from these rules: (state, first error it matches) → rule. The
# retriers for Lambda's own service errors have no local counterpart and stay as written.
ASL_RETRIERS: dict[tuple[str, str], RetryPolicy] = {
    ("RunStep", "StepRetryableError"): STEP_RETRY,
    ("RunStep", "Unavailable"): STORE_RETRY,
    ("Approval", "Unavailable"): STORE_RETRY,
    ("ApprovalTimedOut", "States.ALL"): RECORD_FAILURE_RETRY,
    ("RecordFailure", "States.ALL"): RECORD_FAILURE_RETRY,
}
