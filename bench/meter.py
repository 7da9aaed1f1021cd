"""Counting what a boto3 DynamoDB client asks of DynamoDB, through botocore's event hooks
(no patching): requests per operation, their client-observed time, and the capacity
DynamoDB reports when `ReturnConsumedCapacity=TOTAL` is injected into every request that
accepts it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

WRITE_OPERATIONS = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
)


@dataclass
class Snapshot:
    calls: Counter = field(default_factory=Counter)
    read_units: float = 0.0
    write_units: float = 0.0
    seconds: float = 0.0  # summed client-observed request time

    @property
    def requests(self) -> int:
        return sum(self.calls.values())

    @property
    def writes(self) -> int:
        return sum(n for op, n in self.calls.items() if op in WRITE_OPERATIONS)

    @property
    def reads(self) -> int:
        return self.requests - self.writes

    @property
    def mean_seconds(self) -> float:
        return self.seconds / self.requests if self.requests else float("nan")

    def describe(self) -> str:
        return ", ".join(f"{op} {n:g}" for op, n in sorted(self.calls.items())) or "none"

    def __sub__(self, other: Snapshot) -> Snapshot:
        return Snapshot(
            calls=self.calls - other.calls,
            read_units=self.read_units - other.read_units,
            write_units=self.write_units - other.write_units,
            seconds=self.seconds - other.seconds,
        )


class RequestMeter:
    """Attach to one or more clients; `snapshot()` and `reset()` are thread-safe."""

    def __init__(self, *clients: Any, consumed_capacity: bool = True):
        self._lock = threading.Lock()
        self._state = Snapshot()
        self._capacity = consumed_capacity
        for client in clients:
            self.attach(client)

    def attach(self, client: Any) -> None:
        events = client.meta.events
        service = client.meta.service_model.service_id.hyphenize()
        uid = f"bench-meter-{id(self)}"
        if self._capacity:
            events.register(f"provide-client-params.{service}", self._inject, unique_id=uid + "-p")
        events.register(f"before-call.{service}", self._before, unique_id=uid + "-b")
        events.register(f"after-call.{service}", self._after, unique_id=uid + "-a")

    @staticmethod
    def _inject(params: dict, model: Any, **_: Any) -> None:
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    @staticmethod
    def _before(context: dict, **_: Any) -> None:
        context["bench_started"] = time.perf_counter()

    def _after(self, model: Any, parsed: dict, context: dict, **_: Any) -> None:
        elapsed = time.perf_counter() - context.get("bench_started", time.perf_counter())
        consumed = parsed.get("ConsumedCapacity") if isinstance(parsed, dict) else None
        items = consumed if isinstance(consumed, list) else [consumed] if consumed else []
        read = write = 0.0
        for entry in items:
            read += float(entry.get("ReadCapacityUnits") or 0)
            write += float(entry.get("WriteCapacityUnits") or 0)
            if not entry.get("ReadCapacityUnits") and not entry.get("WriteCapacityUnits"):
                # Some answers carry only the total: count it on the side the operation is.
                units = float(entry.get("CapacityUnits") or 0)
                if model.name in WRITE_OPERATIONS:
                    write += units
                else:
                    read += units
        with self._lock:
            self._state.calls[model.name] += 1
            self._state.read_units += read
            self._state.write_units += write
            self._state.seconds += elapsed

    def snapshot(self) -> Snapshot:
        with self._lock:
            s = self._state
            return Snapshot(Counter(s.calls), s.read_units, s.write_units, s.seconds)

    def reset(self) -> None:
        with self._lock:
            self._state = Snapshot()


def capacity(s: Snapshot) -> str:
    return f"{s.read_units:g} RCU / {s.write_units:g} WCU"
