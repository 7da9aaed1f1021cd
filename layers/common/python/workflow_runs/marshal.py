"""DynamoDB's typed JSON and back, for every reader of the runs table (the store and the
projector's stream images). JSON payloads are kept as strings, so no Decimal ever leaks;
the runs table holds S, N, BOOL and SS only."""

from __future__ import annotations

import json
from typing import Any

from . import keys


class NotDynamoJson(ValueError):
    """An attribute that is not `{type: value}` DynamoDB JSON."""


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def js(value: Any) -> dict[str, str]:
    return {"S": json.dumps(value, separators=(",", ":"), ensure_ascii=False)}


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """An item (or a stream image) as plain values: numbers as int (or float), sets as lists."""
    out: dict[str, Any] = {}
    for name, typed in item.items():
        if not isinstance(typed, dict) or len(typed) != 1:
            raise NotDynamoJson(f"attribute {name} is not DynamoDB JSON")
        ((kind, value),) = typed.items()
        if kind == "N":
            out[name] = int(value) if str(value).lstrip("-").isdigit() else float(value)
        elif kind in ("S", "BOOL"):
            out[name] = value
        elif kind in ("SS", "NS"):
            out[name] = list(value)
        else:
            out[name] = None
    return out


def json_of(row: dict[str, Any], name: str, default: Any = None) -> Any:
    value = row.get(name)
    return json.loads(value) if isinstance(value, str) and value else default


def key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {keys.PK: s(pk), keys.SK: s(sk)}


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item in bytes (attribute names plus values, as AWS documents
    it): what a write is billed by, in 1 KB units."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(typed: dict[str, Any]) -> int:
    ((kind, value),) = typed.items()
    if kind == "S":
        return len(value.encode())
    if kind == "N":
        digits = value.lstrip("-").replace(".", "").lstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "BOOL" or kind == "NULL":
        return 1
    if kind in ("SS", "NS"):
        return sum(len(str(v).encode()) for v in value)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in value.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in value)
    return len(str(value))
