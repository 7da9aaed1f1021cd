"""When a blocking answer must leave: the least of the caller's budget, the Lambda's
remaining time and API Gateway's integration timeout, each less a margin, all counted from
the request's arrival (docs/decisions.md, "The blocking execute's deadline").

Arrival is the earliest moment the platform tells us of: API Gateway's `requestTimeEpoch`
(before a cold start, JWKS fetch or StartExecution) when the request came through it, else
the moment the app's outermost layer saw the request (`ArrivalClock`). Import-light: no web
framework here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .cors import ASGIApp, Receive, Scope, Send

ARRIVED = "workflow_runs.arrived"
API_GATEWAY_TIMEOUT_SECONDS = 29.0
# Left for what follows the wait: the run's final read, the reply, the gateway's own hop.
API_GATEWAY_MARGIN_SECONDS = 2.0
# Left of the Lambda's remaining time: the final read and the reply, and Mangum's return.
LAMBDA_MARGIN_SECONDS = 1.0
# EXECUTE_WAIT_SECONDS is itself the budget the operator chose (≤ 28 s): nothing is taken off it.
WAIT_MARGIN_SECONDS = 0.0


class ArrivalClock:
    """Notes in the scope when the request reached the app (`time.monotonic()`)."""

    def __init__(self, app: ASGIApp, monotonic: Callable[[], float] = time.monotonic):
        self.app = app
        self.monotonic = monotonic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ARRIVED not in scope:
            scope[ARRIVED] = self.monotonic()
        await self.app(scope, receive, send)


def arrival(scope: Scope, *, monotonic: Callable[[], float] = time.monotonic,
            wall: Callable[[], float] = time.time) -> float:
    """The request's arrival, as a `monotonic()` time."""
    now = monotonic()
    seen = float(scope.get(ARRIVED, now))
    context = (scope.get("aws.event") or {}).get("requestContext") or {}
    epoch_ms = context.get("requestTimeEpoch") or context.get("timeEpoch")
    if isinstance(epoch_ms, (int, float)) and not isinstance(epoch_ms, bool):
        # How long ago API Gateway received it; clamped: a clock a little ahead of the
        # gateway's must not move arrival into the future.
        behind = max(0.0, wall() - epoch_ms / 1000)
        return min(seen, now - behind)
    return seen


def answer_deadline(scope: Scope, wait_seconds: float, *, monotonic: Callable[[], float] = time.monotonic,
                    wall: Callable[[], float] = time.time) -> float:
    """The `monotonic()` time by which a blocking request must stop waiting and answer."""
    now = monotonic()
    arrived = arrival(scope, monotonic=lambda: now, wall=wall)
    bounds = [
        arrived + wait_seconds - WAIT_MARGIN_SECONDS,
        arrived + API_GATEWAY_TIMEOUT_SECONDS - API_GATEWAY_MARGIN_SECONDS,
    ]
    remaining = _remaining_seconds(scope.get("aws.context"))
    if remaining is not None:
        bounds.append(now + remaining - LAMBDA_MARGIN_SECONDS)
    return min(bounds)


def _remaining_seconds(context: Any) -> float | None:
    read = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(read):
        return None
    try:
        return float(read()) / 1000
    except (TypeError, ValueError):
        return None
