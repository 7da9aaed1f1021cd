"""Exponential back-off: the one rule behind every loop that waits longer after each miss
(the store's retries of throttled writes, the event-log reader's idle pacing and read
retries, the local stream poller's retries), and which AWS errors are worth another try
(`transient`: the execution's start, the approval's callback)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Attempt k waits min(cap, base·2^k); with `jitter` (full jitter, for contention), a
    uniform draw below that instead, so retrying clients spread out."""

    attempts: int = 8
    base_seconds: float = 0.02
    cap_seconds: float = 0.5
    jitter: bool = True

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempt))
        return rng() * ceiling if self.jitter else ceiling

    def delays(self, rng: Callable[[], float] = random.random) -> Iterator[float]:
        """The waits between `attempts` tries (one fewer than the tries)."""
        for attempt in range(self.attempts - 1):
            yield self.delay(attempt, rng)


# What an AWS service answers when it is busy, not when the request is wrong.
TRANSIENT_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
                             "ServiceUnavailable", "ServiceUnavailableException", "InternalServerError",
                             "InternalServerException", "InternalFailure"})


def transient(exc: Exception) -> bool:
    """A throttle or a 5xx that outlasted botocore's retries, or a connection that failed:
    worth another try a moment later. (Duck-typed: botocore loads with the client.)"""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
        return (response.get("Error") or {}).get("Code") in TRANSIENT_CODES or status >= 500 or status == 429
    return type(exc).__name__ in ("EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
                                  "ConnectTimeoutError")
