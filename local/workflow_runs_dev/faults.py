"""An unkind DynamoDB: transaction conflicts and throttling injected in front of the real one.

DynamoDB Local serialises every request, so it never cancels a transaction for a conflict and
never throttles: code that mishandles either passes every local test. A `FaultInjector`
attached to a boto3 DynamoDB client answers some requests itself, on botocore's
`before-send.dynamodb.<Operation>` event, with the HTTP response DynamoDB sends in AWS (status
400, the same JSON body and headers). botocore parses it into the same exceptions
(`client.exceptions.TransactionCanceledException` with `exc.response["CancellationReasons"]`),
and its own retry handler (`needs-retry`) treats it as it treats AWS's: throttling is
retried with backoff up to the client's max attempts, a cancelled transaction is not.

What it does, per HTTP attempt (a botocore retry is a new attempt):
- **Overlap.** A TransactWriteItems that touches an item (table + key, by Put / Update /
  Delete / ConditionCheck) that another TransactWriteItems touches while that one is in
  flight (sent and not yet answered, on any client attached to the same injector) is
  cancelled: `TransactionConflict` on the overlapping entries, `None` on the others. A
  PutItem / UpdateItem / DeleteItem on such an item fails with TransactionConflictException.
  In AWS either side of a conflict may lose; here the later one always does.
- **Random conflicts.** `conflict_rate` of the TransactWriteItems that get past that are
  cancelled with `TransactionConflict` on one entry drawn at random: a known share of
  conflicts whatever the local concurrency, on any item, not only the hot ones.
- **Throttling.** `throttle_rate` of every data-plane request is refused before it reaches
  the table. A TransactWriteItems: TransactionCanceledException with `ThrottlingError` on
  one entry (what an on-demand table answers) or ProvisionedThroughputExceededException,
  half each; any other operation: ProvisionedThroughputExceededException or
  ThrottlingException, half each. Control-plane calls (CreateTable, DescribeTable, …) pass.

A refused request never reaches DynamoDB Local, so it changes nothing. The draws come from
one `random.Random(seed)` (four per attempt, whatever the outcome), so a single-threaded
sequence of requests meets the same faults on every run. `stats` counts what was injected.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from workflow_runs import keys

DYNAMODB_TYPE = "com.amazonaws.dynamodb.v20120810#"
# DynamoDB answers ThrottlingException from its availability layer, under this namespace.
THROTTLING_TYPE = "com.amazon.coral.availability#ThrottlingException"
CONFLICT_MESSAGE = "Transaction is ongoing for the item"
THROTTLING_MESSAGE = (
    "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your "
    "table or index so please try again shortly. If exceptions persist, check if you have a hot key: "
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html"
)
PROVISIONED_MESSAGE = (
    "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API."
)

TRANSACT_WRITE = "TransactWriteItems"
SINGLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "ExecuteStatement",
                   "BatchExecuteStatement", "ExecuteTransaction"})
DATA_PLANE = READS | SINGLE_WRITES | {TRANSACT_WRITE, "BatchWriteItem"}

# Counters in `stats`: what was seen, then what was injected (one per refused attempt).
SEEN = ("requests", "transact_writes")
KINDS = (
    "conflict_overlap",                # TransactionCanceledException: TransactionConflict on the overlapping entries
    "conflict_random",                 # TransactionCanceledException: TransactionConflict on one random entry
    "conflict_single_write",           # TransactionConflictException: a single write hit an item in flight
    "throttle_cancelled_transaction",  # TransactionCanceledException: ThrottlingError on one entry
    "throttle_provisioned",            # ProvisionedThroughputExceededException
    "throttle_throttling",             # ThrottlingException
)

# An attempt is in flight from `before-send` until its response arrives (`before-parse`, so
# the client's own parsing does not stretch it), or its send failed (`response-received`,
# after every attempt), or the call raised (`after-call-error`). All run in the caller's thread.
_EVENTS = ("before-send.dynamodb", "before-parse.dynamodb", "response-received.dynamodb", "after-call-error.dynamodb")
_SPEC_KEYS = {"conflict": "conflict_rate", "throttle": "throttle_rate", "seed": "seed", "overlap": "overlap"}


def parse_spec(spec: str) -> dict[str, Any]:
    """`conflict=0.2,throttle=0.1,seed=7[,overlap=off]` → FaultInjector keyword arguments.
    Rates are fractions from 0 to 1; ValueError names what is wrong."""
    options: dict[str, Any] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, raw = (s.strip() for s in part.partition("="))
        if not sep or name not in _SPEC_KEYS:
            raise ValueError(f"'{part}': expected name=value with name one of {', '.join(_SPEC_KEYS)}")
        if name == "seed":
            try:
                options["seed"] = int(raw)
            except ValueError:
                raise ValueError(f"seed must be an integer, not '{raw}'") from None
        elif name == "overlap":
            if raw.lower() not in ("on", "off", "1", "0", "true", "false"):
                raise ValueError(f"overlap must be on or off, not '{raw}'")
            options["overlap"] = raw.lower() in ("on", "1", "true")
        else:
            options[_SPEC_KEYS[name]] = _rate(name, raw)
    if not options:
        raise ValueError("empty fault spec; e.g. conflict=0.2,throttle=0.1")
    return options


def _rate(name: str, raw: str) -> float:
    try:
        value = float(raw.removesuffix("%")) / (100 if raw.endswith("%") else 1)
    except ValueError:
        raise ValueError(f"{name} must be a number from 0 to 1, not '{raw}'") from None
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be from 0 to 1, not {raw}")
    return value


@dataclass
class _Attached:
    client: Any
    handlers: tuple[Any, ...]


class FaultInjector:
    def __init__(
        self,
        conflict_rate: float = 0.0,
        throttle_rate: float = 0.0,
        seed: int | None = None,
        *,
        overlap: bool = True,
        key_attributes: tuple[str, ...] = (keys.PK, keys.SK),
    ):
        """`key_attributes` name an item's key in a Put (both project tables key on PK, SK);
        `overlap=False` turns the in-flight overlap rule off, leaving the rates alone."""
        for name, value in (("conflict_rate", conflict_rate), ("throttle_rate", throttle_rate)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be from 0 to 1, not {value}")
        self.conflict_rate = conflict_rate
        self.throttle_rate = throttle_rate
        self.seed = seed
        self.overlap = overlap
        self._key_attributes = key_attributes
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._in_flight: Counter[tuple[str, str]] = Counter()  # item → in-flight transactions touching it
        self._attempt = threading.local()  # the items of the calling thread's transaction in flight
        self._counts: Counter[str] = Counter()
        self._suspended = 0
        self._attached: list[_Attached] = []

    @classmethod
    def from_spec(cls, spec: str) -> FaultInjector:
        return cls(**parse_spec(spec))

    def describe(self) -> str:
        overlap = "and every one overlapping another in flight" if self.overlap else "(overlaps not detected)"
        seed = f", seed {self.seed}" if self.seed is not None else ""
        return (f"{self.conflict_rate:.0%} of transactions cancelled at random {overlap} (TransactionConflict), "
                f"{self.throttle_rate:.0%} of requests throttled{seed}")

    # ------------------------------------------------------------------ wiring

    def attach(self, client: Any) -> Any:
        """Put the injector in front of `client` (a boto3 DynamoDB client); returns it."""
        if any(a.client is client for a in self._attached):
            return client
        region = client.meta.region_name or "us-east-1"
        handlers = (
            lambda request, event_name, **_: self._before_send(request, event_name, region),
            self._attempt_answered,
            self._attempt_answered,
            self._attempt_answered,
        )
        for event, handler in zip(_EVENTS, handlers, strict=True):
            client.meta.events.register(event, handler)
        self._attached.append(_Attached(client, handlers))
        return client

    def detach(self, client: Any | None = None) -> None:
        """Take the injector off `client`, or off every client it is attached to."""
        keep = []
        for attached in self._attached:
            if client is not None and attached.client is not client:
                keep.append(attached)
                continue
            for event, handler in zip(_EVENTS, attached.handlers, strict=True):
                attached.client.meta.events.unregister(event, handler)
        self._attached = keep

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Let every request through meanwhile (set-up and inspection in tests)."""
        with self._lock:
            self._suspended += 1
        try:
            yield
        finally:
            with self._lock:
                self._suspended -= 1

    @property
    def stats(self) -> dict[str, int]:
        """Attempts seen and faults injected, by kind (every kind present), plus `injected`."""
        with self._lock:
            counts = {name: self._counts[name] for name in (*SEEN, *KINDS)}
        counts["injected"] = sum(counts[kind] for kind in KINDS)
        return counts

    @property
    def in_flight(self) -> int:
        """Items touched by transactions sent and not yet answered (0 when all is quiet)."""
        with self._lock:
            return sum(self._in_flight.values())

    # ------------------------------------------------------------------ the handlers

    def _before_send(self, request: Any, event_name: str, region: str) -> Any:
        self._attempt_answered()  # a thread sends one attempt at a time: any earlier one is over
        operation = event_name.rsplit(".", 1)[-1]
        if operation not in DATA_PLANE:
            return None
        body = json.loads(request.body or b"{}")
        transaction = operation == TRANSACT_WRITE
        items = _transaction_items(body, self._key_attributes) if transaction else []
        with self._lock:
            if self._suspended:
                return None
            self._counts["requests"] += 1
            self._counts["transact_writes"] += transaction
            throttle, form, conflict, pick = (self._rng.random() for _ in range(4))
            if throttle < self.throttle_rate:
                return self._throttled(request, operation, body, items, region, form, pick)
            if transaction:
                overlapping = [i for i, item in enumerate(items) if self.overlap and self._in_flight[item]]
                if overlapping:
                    return self._cancelled(request, "conflict_overlap", len(items), overlapping, "TransactionConflict")
                if conflict < self.conflict_rate:
                    return self._cancelled(request, "conflict_random", len(items), [int(pick * len(items))],
                                           "TransactionConflict")
                # It goes to the table: its items are in flight until the attempt is answered.
                self._in_flight.update(items)
                self._attempt.items = items
            elif operation in SINGLE_WRITES and self.overlap and self._in_flight[self._single_item(body)]:
                self._counts["conflict_single_write"] += 1
                return _response(request, DYNAMODB_TYPE + "TransactionConflictException",
                                 {"message": CONFLICT_MESSAGE})
        return None

    def _single_item(self, body: dict[str, Any]) -> tuple[str, str]:
        key = body["Key"] if "Key" in body else _put_key(body.get("Item", {}), self._key_attributes)
        return _item_key(body.get("TableName", ""), key)

    def _attempt_answered(self, **_: Any) -> None:
        """The calling thread's attempt was answered (any response, or an error instead of one)."""
        items = getattr(self._attempt, "items", None)
        self._attempt.items = None
        if items:
            with self._lock:
                self._in_flight.subtract(items)
                self._in_flight += Counter()  # drop the items no transaction touches any more

    def _throttled(self, request: Any, operation: str, body: dict, items: list, region: str,
                   form: float, pick: float) -> Any:
        if operation == TRANSACT_WRITE and form < 0.5:
            return self._cancelled(request, "throttle_cancelled_transaction", len(items), [int(pick * len(items))],
                                   "ThrottlingError")
        if operation == TRANSACT_WRITE or form < 0.5:
            self._counts["throttle_provisioned"] += 1
            table = body.get("TableName") or _first_table(body)
            direction = "Read" if operation in READS else "Write"
            reason = {"reason": f"Table{direction}KeyRangeThroughputExceeded",
                      "resource": f"arn:aws:dynamodb:{region}:000000000000:table/{table}"}
            return _response(request, DYNAMODB_TYPE + "ProvisionedThroughputExceededException",
                             {"message": PROVISIONED_MESSAGE, "ThrottlingReasons": [reason]})
        self._counts["throttle_throttling"] += 1
        return _response(request, THROTTLING_TYPE, {"message": THROTTLING_MESSAGE})

    def _cancelled(self, request: Any, kind: str, entries: int, failing: list[int], code: str) -> Any:
        self._counts[kind] += 1
        message = THROTTLING_MESSAGE if code == "ThrottlingError" else CONFLICT_MESSAGE
        reasons = [{"Code": code, "Message": message} if i in failing else {"Code": "None"} for i in range(entries)]
        summary = ", ".join(r["Code"] for r in reasons)
        return _response(request, DYNAMODB_TYPE + "TransactionCanceledException", {
            "CancellationReasons": reasons,
            "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{summary}]",
        })


# ------------------------------------------------------------------ requests and responses


def _item_key(table: str, key: dict[str, Any]) -> tuple[str, str]:
    return table, json.dumps(key, sort_keys=True, separators=(",", ":"))


def _transaction_items(body: dict[str, Any], key_attributes: tuple[str, ...]) -> list[tuple[str, str]]:
    """The item each entry of a TransactWriteItems touches, in entry order."""
    items = []
    for entry in body.get("TransactItems", []):
        (action, spec), = entry.items()
        key = _put_key(spec["Item"], key_attributes) if action == "Put" else spec["Key"]  # Update, Delete, ConditionCheck
        items.append(_item_key(spec["TableName"], key))
    return items


def _put_key(item: dict[str, Any], key_attributes: tuple[str, ...]) -> dict[str, Any]:
    return {name: item[name] for name in key_attributes if name in item} or item


def _first_table(body: dict[str, Any]) -> str:
    for entry in body.get("TransactItems", []):
        (spec,) = entry.values()
        return spec.get("TableName", "")
    return ""


class _Body:
    """The raw stream botocore reads an `AWSResponse`'s content from."""

    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _response(request: Any, error_type: str, fields: dict[str, Any]) -> Any:
    """DynamoDB's error response: 400, `__type` plus the error's fields, as AWS sends it."""
    from botocore.awsrequest import AWSResponse  # keeps parse_spec (the CLI's) light

    body = json.dumps({"__type": error_type, **fields}, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "Content-Length": str(len(body)),
        "x-amzn-RequestId": uuid.uuid4().hex.upper()[:32] + "FAULTINJECTED0000000",
        "x-amz-crc32": str(zlib.crc32(body) & 0xFFFFFFFF),
    }
    # botocore wraps any mapping in a HeadersDict; its stub asks for the narrower HTTPHeaders.
    return AWSResponse(request.url, 400, headers, _Body(body))  # type: ignore[arg-type]
