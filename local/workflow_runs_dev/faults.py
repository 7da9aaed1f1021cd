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

- **Server errors.** `error_rate` of every data-plane request is answered 500
  InternalServerError or 503 ServiceUnavailable (half each), as AWS's 5xx are: botocore
  retries them like throttling.
- **Surfaced faults.** `surface_rate` of every call fails before botocore sends it
  (`before-call`): the throttle reaches our code at once, as one that outlasted botocore's
  own retries does.
- **Storms.** Throttling is not a rate in AWS: an episode fails every call for seconds. For
  `storm_seconds` from `storm_at` seconds after it is first attached (then every
  `storm_every` seconds, when given), or from a `storm()` call, every attempt of every
  attached client is throttled or answered 5xx: botocore's retries run and give up, and
  the error reaches our code.

Any boto3 client can be attached (`attach`), not only DynamoDB's: the stream poller's
DynamoDB Streams client too; for any other service every operation is data plane and a
throttle is `ThrottlingException`. The local stand-ins of the other AWS services (the local
orchestrator for Step Functions, the `echo` model for Bedrock) have no botocore client: they
ask `guard(service, operation)`, which raises what botocore would raise after its retries
(a ClientError `ThrottlingException`) during a storm and for `surface_rate` of the calls
(`FaultyOrchestrator`, `faulty_registry`).

A refused request never reaches DynamoDB Local, so it changes nothing. The draws come from
one `random.Random(seed)` (four per attempt, whatever the outcome), so a single-threaded
sequence of requests meets the same faults on every run. `stats` counts what was injected.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
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
    "server_error",                    # 500 InternalServerError / 503 ServiceUnavailable
    "surfaced",                        # refused before botocore sent it: no retry of botocore's
    "storm",                           # refused because a storm is on
    "guarded",                         # a local stand-in's call refused (guard)
)

# An attempt is in flight from `before-send` until its response arrives (`before-parse`, so
# the client's own parsing does not stretch it), or its send failed (`response-received`,
# after every attempt), or the call raised (`after-call-error`). All run in the caller's thread.
_EVENTS = ("before-send", "before-parse", "response-received", "after-call-error", "before-call")
_SPEC_KEYS = {"conflict": "conflict_rate", "throttle": "throttle_rate", "error": "error_rate",
              "surface": "surface_rate", "guard": "guard_rate", "storm": "storm_seconds", "storm_at": "storm_at",
              "storm_every": "storm_every", "seed": "seed", "overlap": "overlap"}
_SECONDS = frozenset({"storm_seconds", "storm_at", "storm_every"})


def parse_spec(spec: str) -> dict[str, Any]:
    """`conflict=0.2,throttle=0.1,error=0.05,surface=0.02,guard=0.1,storm=5,storm_at=0,storm_every=30,
    seed=7[,overlap=off]` → FaultInjector keyword arguments. Rates are fractions from 0 to 1,
    storm times seconds; ValueError names what is wrong."""
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
        elif _SPEC_KEYS[name] in _SECONDS:
            try:
                options[_SPEC_KEYS[name]] = float(raw.removesuffix("s"))
            except ValueError:
                raise ValueError(f"{name} must be a number of seconds, not '{raw}'") from None
            if options[_SPEC_KEYS[name]] < 0:
                raise ValueError(f"{name} must not be negative")
        else:
            options[_SPEC_KEYS[name]] = _rate(name, raw)
    if not options:
        raise ValueError("empty fault spec; e.g. conflict=0.2,throttle=0.1 or storm=5")
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
        error_rate: float = 0.0,
        surface_rate: float = 0.0,
        guard_rate: float | None = None,
        storm_seconds: float = 0.0,
        storm_at: float = 0.0,
        storm_every: float = 0.0,
        overlap: bool = True,
        key_attributes: tuple[str, ...] = (keys.PK, keys.SK),
        clock: Callable[[], float] = time.monotonic,
        transaction_seconds: tuple[float, float] | None = None,
    ):
        """`key_attributes` name an item's key in a Put (both project tables key on PK, SK);
        `overlap=False` turns the in-flight overlap rule off, leaving the rates alone;
        `transaction_seconds=(low, high)` holds each transaction that goes to the table in
        flight that much longer (drawn uniformly), as long as one lasts in AWS, where a
        transaction takes 10–25 ms more than a single write (DynamoDB Local takes ~2 ms).
        `guard_rate` is the share of the local stand-ins' calls refused (Step Functions, the
        model), `surface_rate` when not given: they are few next to DynamoDB's."""
        for name, value in (("conflict_rate", conflict_rate), ("throttle_rate", throttle_rate),
                            ("error_rate", error_rate), ("surface_rate", surface_rate),
                            ("guard_rate", surface_rate if guard_rate is None else guard_rate)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be from 0 to 1, not {value}")
        self.conflict_rate = conflict_rate
        self.throttle_rate = throttle_rate
        self.error_rate = error_rate
        self.surface_rate = surface_rate
        self.guard_rate = guard_rate
        self.storm_seconds = storm_seconds
        self.storm_every = storm_every
        self._clock = clock
        self._storm_at = storm_at  # counted from the first attach
        self._storm_from = self._storm_until = float("inf")
        self.seed = seed
        self.overlap = overlap
        self.transaction_seconds = transaction_seconds
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
        more = "".join(
            (f", {self.error_rate:.0%} answered 5xx" if self.error_rate else "",
             f", {self.surface_rate:.0%} of calls failed past botocore's retries" if self.surface_rate else "",
             (f", storms of {self.storm_seconds:g} s failing every call"
              + (f" every {self.storm_every:g} s" if self.storm_every else "")) if self.storm_seconds else ""))
        return (f"{self.conflict_rate:.0%} of transactions cancelled at random {overlap} (TransactionConflict), "
                f"{self.throttle_rate:.0%} of requests throttled{more}{seed}")

    # ------------------------------------------------------------------ storms

    def storm(self, seconds: float) -> None:
        """Fail every call of every attached client (and every `guard`) for `seconds` from now."""
        with self._lock:
            self._storm_from, self._storm_until = self._clock(), self._clock() + seconds
            self.storm_every = 0.0

    @property
    def storming(self) -> bool:
        """Whether a storm is on now (a periodic storm moves on to its next window)."""
        now = self._clock()
        if self.storm_every and now >= self._storm_until:
            periods = (now - self._storm_from) // self.storm_every
            self._storm_from += periods * self.storm_every
            self._storm_until = self._storm_from + self.storm_seconds
        return self._storm_from <= now < self._storm_until

    def guard(self, service: str, operation: str) -> None:
        """A call of a local stand-in of `service` (no botocore client of its own): raises
        what botocore raises once its retries gave up (ClientError ThrottlingException)
        during a storm, and for `surface_rate` of the calls."""
        with self._lock:
            if self._suspended:
                return
            self._counts["requests"] += 1
            rate = self.surface_rate if self.guard_rate is None else self.guard_rate
            refused = self.storming or (rate > 0 and self._rng.random() < rate)
            if refused:
                self._counts["guarded"] += 1
        if refused:
            from botocore.exceptions import ClientError

            answer: Any = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                           "ResponseMetadata": {"HTTPStatusCode": 400}}
            raise ClientError(answer, operation)

    # ------------------------------------------------------------------ wiring

    def attach(self, client: Any) -> Any:
        """Put the injector in front of `client` (a boto3 DynamoDB client); returns it."""
        if any(a.client is client for a in self._attached):
            return client
        with self._lock:
            if self.storm_seconds and self._storm_from == float("inf"):
                self._storm_from = self._clock() + self._storm_at
                self._storm_until = self._storm_from + self.storm_seconds
        region = client.meta.region_name or "us-east-1"
        service = client.meta.service_model.service_id.hyphenize()
        dynamodb = service == "dynamodb"
        handlers = (
            lambda request, event_name, **_: self._before_send(request, event_name, region, dynamodb),
            self._attempt_answered,
            self._attempt_answered,
            self._attempt_answered,
            lambda model, **_: self._before_call(model, dynamodb),
        )
        events = tuple(f"{event}.{service}" for event in _EVENTS)
        for event, handler in zip(events, handlers, strict=True):
            client.meta.events.register(event, handler)
        self._attached.append(_Attached(client, tuple(zip(events, handlers, strict=True))))
        return client

    def detach(self, client: Any | None = None) -> None:
        """Take the injector off `client`, or off every client it is attached to."""
        keep = []
        for attached in self._attached:
            if client is not None and attached.client is not client:
                keep.append(attached)
                continue
            for event, handler in attached.handlers:
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

    def _before_call(self, model: Any, dynamodb: bool) -> Any:
        """Before botocore's first attempt: a surfaced fault skips its retries."""
        if not self.surface_rate or (dynamodb and model.name not in DATA_PLANE):
            return None
        with self._lock:
            if self._suspended or self._rng.random() >= self.surface_rate:
                return None
            self._counts["requests"] += 1
            self._counts["surfaced"] += 1
            transaction = model.name == TRANSACT_WRITE
        from botocore.awsrequest import AWSResponse

        code = "ProvisionedThroughputExceededException" if dynamodb and not transaction else "ThrottlingException"
        parsed: dict[str, Any] = {"Error": {"Code": code, "Message": THROTTLING_MESSAGE},
                                  "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("https://fault.invalid/", 400, {}, _Body(b"")), parsed  # type: ignore[arg-type]

    def _before_send(self, request: Any, event_name: str, region: str, dynamodb: bool = True) -> Any:
        self._attempt_answered()  # a thread sends one attempt at a time: any earlier one is over
        operation = event_name.rsplit(".", 1)[-1]
        if dynamodb and operation not in DATA_PLANE:
            return None
        body = json.loads(request.body or b"{}") if dynamodb else {}
        transaction = operation == TRANSACT_WRITE
        items = _transaction_items(body, self._key_attributes) if transaction else []
        hold = 0.0
        with self._lock:
            if self._suspended:
                return None
            self._counts["requests"] += 1
            self._counts["transact_writes"] += transaction
            throttle, form, conflict, pick = (self._rng.random() for _ in range(4))
            storming = self.storming
            if storming or (self.error_rate and self._rng.random() < self.error_rate):
                if storming:
                    self._counts["storm"] += 1
                if storming and form < 0.5 or not dynamodb:
                    self._counts["throttle_throttling"] += 1
                    return _response(request, THROTTLING_TYPE, {"message": THROTTLING_MESSAGE})
                return self._server_error(request, pick)
            if throttle < self.throttle_rate:
                if not dynamodb:
                    self._counts["throttle_throttling"] += 1
                    return _response(request, THROTTLING_TYPE, {"message": THROTTLING_MESSAGE})
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
                if self.transaction_seconds:
                    low, high = self.transaction_seconds
                    hold = low + (high - low) * self._rng.random()
            elif operation in SINGLE_WRITES and self.overlap and self._in_flight[self._single_item(body)]:
                self._counts["conflict_single_write"] += 1
                return _response(request, DYNAMODB_TYPE + "TransactionConflictException",
                                 {"message": CONFLICT_MESSAGE})
        if hold:
            time.sleep(hold)  # its items stay in flight meanwhile, as in AWS's longer transaction
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

    def _server_error(self, request: Any, pick: float) -> Any:
        self._counts["server_error"] += 1
        if pick < 0.5:
            return _response(request, DYNAMODB_TYPE + "InternalServerError", {"message": "Internal server error"},
                             status=500)
        return _response(request, "ServiceUnavailable", {"message": "Service unavailable"}, status=503)

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


def _response(request: Any, error_type: str, fields: dict[str, Any], status: int = 400) -> Any:
    """DynamoDB's error response: 400 (or `status`), `__type` plus the error's fields, as AWS sends it."""
    from botocore.awsrequest import AWSResponse  # keeps parse_spec (the CLI's) light

    body = json.dumps({"__type": error_type, **fields}, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "Content-Length": str(len(body)),
        "x-amzn-RequestId": uuid.uuid4().hex.upper()[:32] + "FAULTINJECTED0000000",
        "x-amz-crc32": str(zlib.crc32(body) & 0xFFFFFFFF),
    }
    # botocore wraps any mapping in a HeadersDict; its stub asks for the narrower HTTPHeaders.
    return AWSResponse(request.url, status, headers, _Body(body))  # type: ignore[arg-type]


# ------------------------------------------------------------------ the local stand-ins


# The orchestrator port's methods, and the Step Functions operation each one calls.
ORCHESTRATOR_OPERATIONS = {"start": "StartExecution", "stop": "StopExecution", "describe": "DescribeExecution",
                           "send_task_success": "SendTaskSuccess", "send_task_failure": "SendTaskFailure"}


class FaultyOrchestrator:
    """The orchestrator port with Step Functions' faults: each call asks the injector first,
    as `StepFunctionsOrchestrator`'s botocore client would meet them after its retries."""

    def __init__(self, inner: Any, injector: FaultInjector):
        self._inner = inner
        self._injector = injector

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        operation = ORCHESTRATOR_OPERATIONS.get(name)
        if operation is None:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._injector.guard("states", operation)
            return attribute(*args, **kwargs)

        return call


class _FaultyModel:
    """An `llm` step whose model call (Bedrock's ConverseStream, or the local `echo`) meets the
    injector's faults, classified as the step classifies Bedrock's errors."""

    def __init__(self, inner: Any, injector: FaultInjector):
        self._inner = inner
        self._injector = injector
        self.name = getattr(inner, "name", "llm")

    def run(self, ctx: Any) -> Any:
        from botocore.exceptions import ClientError
        from workflow_runs_step_runner.steps.llm import _classify

        try:
            self._injector.guard("bedrock-runtime", "ConverseStream")
        except ClientError as exc:
            model = "echo" if ctx.settings.llm_provider == "echo" else ctx.settings.bedrock_model_id
            raise _classify(exc, model) from None
        return self._inner.run(ctx)


class faulty_registry:
    """The step registry with the model call of `llm` steps behind the injector."""

    def __init__(self, injector: FaultInjector, registry: Any = None):
        if registry is None:
            from workflow_runs_step_runner.steps import registry as default_registry

            registry = default_registry
        self._registry = registry
        self._injector = injector

    def get(self, type_name: str) -> Any:
        step = self._registry.get(type_name)
        return _FaultyModel(step, self._injector) if type_name == "llm" else step
