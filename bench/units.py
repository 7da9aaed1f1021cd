"""Write and read units per partition key, as DynamoDB bills them, from the items really written.

DynamoDB Local reports consumed capacity, but not per partition key, and it reports a
transactional write at four units per KB where AWS bills two. So this meter reads the items
around every write (a consistent GetItem before and after, on a second client it does not
meter) and applies AWS's documented rules to the images it sees:

- a standard write costs ⌈size/1 KB⌉ of the larger of the old and new item; a write inside
  TransactWriteItems costs twice that, and so does a ConditionCheck (it is prepared and
  committed like a write);
- every global secondary index the item is in costs index writes of ⌈index item size/1 KB⌉
  (keys + projected attributes + 100 bytes): a put when the item enters it, a delete when
  it leaves, both when its index key changes, one write when a projected attribute changes,
  none otherwise;
- reads: ⌈size/4 KB⌉ per item read, halved for eventually consistent reads; a Query is
  billed on the total size it read; a BatchGetItem per item.

Units are attributed to "<table>:<partition key>" and "<table>/<index>:<partition key>",
so the hottest partition key per run can be read off.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any

from workflow_runs import keys
from workflow_runs.marshal import item_size

INDEX_OVERHEAD_BYTES = 100


class UnitMeter:
    def __init__(self, client: Any, reader: Any, table_indexes: dict[str, tuple[keys.Index, ...]]):
        """`client`: the client whose writes are metered; `reader`: an unmetered client on the
        same endpoint; `table_indexes`: the GSIs of each metered table."""
        self._reader = reader
        self._indexes = table_indexes
        self._lock = threading.Lock()
        self.write_units: Counter[str] = Counter()
        self.read_units: Counter[str] = Counter()
        events = client.meta.events
        events.register("before-parameter-build.dynamodb", self._before, unique_id=f"units-b-{id(self)}")
        events.register("after-call.dynamodb", self._after, unique_id=f"units-a-{id(self)}")

    def reset(self) -> None:
        with self._lock:
            self.write_units.clear()
            self.read_units.clear()

    def totals(self, table: str) -> tuple[float, float]:
        """(write units, read units) of a table and its indexes."""
        def of(counter: Counter[str]) -> float:
            return sum(v for k, v in counter.items() if k.split(":", 1)[0].split("/", 1)[0] == table)

        with self._lock:
            return of(self.write_units), of(self.read_units)

    # ------------------------------------------------------------------ hooks

    def _before(self, model: Any, params: dict, context: dict, **_: Any) -> None:
        context["units_params"] = params
        writes = _writes_of(model.name, params)
        if writes:
            context["units_before"] = [(w, self._image(w["table"], w["key"])) for w in writes]

    def _after(self, model: Any, parsed: dict, context: dict, **_: Any) -> None:
        params = context.get("units_params") or {}
        if "Error" in (parsed or {}):
            return  # a refused write (failed condition, cancelled transaction) writes nothing
        units: Counter[str] = Counter()
        for write, old in context.get("units_before", []):
            new = self._image(write["table"], write["key"])
            self._bill_write(units, write, old, new)
        reads: Counter[str] = Counter()
        _bill_reads(reads, model.name, params, parsed or {})
        with self._lock:
            self.write_units.update(units)
            self.read_units.update(reads)

    def _image(self, table: str, key: dict) -> dict | None:
        return self._reader.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")

    def _bill_write(self, units: Counter[str], write: dict, old: dict | None, new: dict | None) -> None:
        table, transactional = write["table"], write["transactional"]
        pk = write["key"][keys.PK]["S"]
        size = max(item_size(old) if old else 0, item_size(new) if new else 0, 1)
        factor = 2 if transactional else 1
        units[f"{table}:{pk}"] += factor * math.ceil(size / 1024)
        if write["kind"] == "ConditionCheck":
            return
        for index in self._indexes.get(table, ()):
            old_key = _index_key(old, index)
            new_key = _index_key(new, index)
            old_size = _index_item_size(old, index) if old_key else 0
            new_size = _index_item_size(new, index) if new_key else 0
            name = f"{table}/{index.name}"
            if old_key and new_key and old_key == new_key:
                if _projected(old, index) != _projected(new, index):
                    units[f"{name}:{new_key}"] += math.ceil(max(old_size, new_size) / 1024)
                continue
            if old_key:
                units[f"{name}:{old_key}"] += math.ceil(old_size / 1024)
            if new_key:
                units[f"{name}:{new_key}"] += math.ceil(new_size / 1024)


def _writes_of(operation: str, params: dict) -> list[dict]:
    if operation == "TransactWriteItems":
        found = []
        for entry in params.get("TransactItems", []):
            ((kind, body),) = entry.items()
            key = body.get("Key") or {keys.PK: body["Item"][keys.PK], keys.SK: body["Item"][keys.SK]}
            found.append({"table": body["TableName"], "key": key, "transactional": True, "kind": kind})
        return found
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        key = params.get("Key") or {keys.PK: params["Item"][keys.PK], keys.SK: params["Item"][keys.SK]}
        return [{"table": params["TableName"], "key": key, "transactional": False, "kind": operation}]
    return []


def _index_key(item: dict | None, index: keys.Index) -> str | None:
    if not item or index.partition not in item or keys.GSK not in item:
        return None
    return item[index.partition]["S"]


def _projected(item: dict | None, index: keys.Index) -> dict:
    if not item:
        return {}
    return {name: item.get(name) for name in (index.projection or ())}


def _index_item_size(item: dict | None, index: keys.Index) -> int:
    if not item:
        return 0
    names = {keys.PK, keys.SK, keys.GSK, index.partition, *(index.projection or ())}
    return item_size({n: v for n, v in item.items() if n in names}) + INDEX_OVERHEAD_BYTES


def _bill_reads(units: Counter[str], operation: str, params: dict, parsed: dict) -> None:
    if operation == "GetItem":
        table, item = params["TableName"], parsed.get("Item")
        pk = params["Key"][keys.PK]["S"]
        units[f"{table}:{pk}"] += _read_units(item_size(item) if item else 1, params.get("ConsistentRead"))
    elif operation == "Query":
        items = parsed.get("Items", [])
        table = params["TableName"] + (f"/{params['IndexName']}" if params.get("IndexName") else "")
        pk = next(iter(params.get("ExpressionAttributeValues", {}).get(":pk", {}).values()), "?")
        units[f"{table}:{pk}"] += _read_units(sum(item_size(i) for i in items) or 1, params.get("ConsistentRead"))
    elif operation == "BatchGetItem":
        for table, found in parsed.get("Responses", {}).items():
            for item in found:
                units[f"{table}:{item[keys.PK]['S']}"] += _read_units(item_size(item), False)


def _read_units(size: int, consistent: bool | None) -> float:
    units = math.ceil(size / 4096)
    return float(units) if consistent else units / 2
