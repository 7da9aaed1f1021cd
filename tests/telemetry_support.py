"""Reading what Powertools wrote to stdout: EMF metric documents and JSON log records."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from workflow_runs import telemetry


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    values: tuple[float, ...]
    dimensions: dict[str, str]


class _CurrentStdout:
    """Whatever sys.stdout is when a record is written (pytest swaps it per phase)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def point_logs_at_stdout(service: str) -> None:
    """Powertools binds its handler to the stdout of the moment it was first built; a test
    that captures output needs it to write to the current one."""
    telemetry.get_logger(service).registered_handler.stream = _CurrentStdout()  # not setStream: it flushes the old one


def lines(out: str) -> list[dict[str, Any]]:
    parsed = []
    for line in out.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            parsed.append(value)
    return parsed


def metrics(out: str) -> list[Metric]:
    """Every metric of every EMF document, with the dimensions its document declares."""
    found = []
    for doc in lines(out):
        aws = doc.get("_aws")
        if not aws:
            continue
        for directive in aws["CloudWatchMetrics"]:
            assert directive["Namespace"] == telemetry.NAMESPACE
            (dimension_names,) = directive["Dimensions"]
            dimensions = {name: doc[name] for name in dimension_names}
            for definition in directive["Metrics"]:
                raw = doc[definition["Name"]]
                values = tuple(raw) if isinstance(raw, list) else (raw,)
                found.append(Metric(definition["Name"], definition["Unit"], values, dimensions))
    return found


def logs(out: str) -> list[dict[str, Any]]:
    return [doc for doc in lines(out) if "_aws" not in doc and "message" in doc]
