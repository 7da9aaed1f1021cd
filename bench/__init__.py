"""Benchmarks: `python -m bench` (or `make bench`) measures cold starts, request overhead,
DynamoDB cost, state transitions, SSE latency and throughput, and writes docs/benchmarks.md.

Every figure is a ratio against a reference measured side by side in the same run (these
machines are noisy; absolute times are shown for orientation only). Each section runs in its
own interpreter (`python -m bench --section NAME`), so one section's imports, mocks and
threads cannot colour another's figures, and a section that breaks is reported, not fatal.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Figure:
    """One measured figure, its target and whether the target holds (None: no target)."""

    name: str
    value: str
    target: str = "—"
    holds: bool | None = None
    note: str = ""
    # For docs/benchmarks.json: a stable machine name, the number and its unit. Without
    # them the name is slugged and the first number of `value` is taken.
    key: str | None = None
    number: float | None = None
    unit: str = ""

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "MISSED", None: "—"}[self.holds]


@dataclass
class SectionResult:
    key: str
    title: str
    method: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # extra markdown tables (breakdowns)
    notes: list[str] = field(default_factory=list)  # why a target is missed, what would fix it
    error: str | None = None
    seconds: float = 0.0

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SectionResult:
        figures = [Figure(**f) for f in data.pop("figures", [])]
        return cls(**data, figures=figures)


def figure_json(figure: Figure) -> tuple[str, dict[str, Any]]:
    import re

    key = figure.key or re.sub(r"[^a-z0-9]+", "_", figure.name.lower()).strip("_")
    number = figure.number
    if number is None:
        found = re.search(r"-?\d[\d,]*(?:\.\d+)?", figure.value)
        number = float(found.group().replace(",", "")) if found else None
    return key, {"value": number, "unit": figure.unit, "target": figure.target, "holds": figure.holds,
                 "shown": figure.value}


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0–100); with few samples p99 is the maximum."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
