"""Exponential back-off: the one rule behind every loop that waits longer after each miss
(the store's retries of throttled writes, the event-log reader's idle pacing and read
retries, the local stream poller's retries)."""

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
