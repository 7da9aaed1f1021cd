"""The fault injector in front of DynamoDB Local: AWS's wire shapes, parsed by botocore into AWS's
exceptions and retried (or not) by botocore's own standard retry handler."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from workflow_runs.settings import Settings
from workflow_runs_dev.faults import FaultInjector, parse_spec

pytestmark = pytest.mark.dynamodb_local

THROTTLES = {"ProvisionedThroughputExceededException", "ThrottlingException"}
# The kinds of the faults these tests do not ask for (5xx, surfaced, storms, stand-ins).
QUIET_KINDS = {"server_error": 0, "surfaced": 0, "storm": 0, "guarded": 0}


def client(endpoint_url: str, attempts: int = 4) -> Any:
    """A DynamoDB client in botocore's standard retry mode, `attempts` attempts in all."""
    config = Config(retries={"mode": "standard", "total_max_attempts": attempts})
    return boto3.session.Session().client("dynamodb", endpoint_url=endpoint_url, config=config)


def key(pk: str, sk: str = "R") -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


def put(table: str, pk: str, sk: str = "R", condition: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"TableName": table, "Item": {**key(pk, sk), "v": {"N": "1"}}}
    if condition:
        entry["ConditionExpression"] = condition
    return {"Put": entry}


def bump(table: str, pk: str, sk: str = "R") -> dict[str, Any]:
    return {"Update": {"TableName": table, "Key": key(pk, sk), "UpdateExpression": "ADD n :one",
                       "ExpressionAttributeValues": {":one": {"N": "1"}}}}


def check(table: str, pk: str, sk: str = "R") -> dict[str, Any]:
    return {"ConditionCheck": {"TableName": table, "Key": key(pk, sk), "ConditionExpression": "attribute_exists(PK)"}}


def codes(exc: Exception) -> list[str]:
    return [reason["Code"] for reason in exc.response["CancellationReasons"]]  # type: ignore[attr-defined]


class Held:
    """Holds a client's TransactWriteItems between the injector's look at it and the send, so
    it stays in flight while another transaction arrives (or fails it there, with `error`)."""

    def __init__(self, db: Any, error: Exception | None = None):
        self.entered, self.release, self.error = threading.Event(), threading.Event(), error
        # Same event node as the injector's handler, registered last: it runs after the injector's.
        db.meta.events.register_last("before-send.dynamodb", self._hold)

    def _hold(self, event_name: str, **_: Any) -> None:
        if event_name.endswith(".TransactWriteItems"):
            self.entered.set()
            assert self.release.wait(10)
            if self.error is not None:
                raise self.error


@pytest.fixture
def table(local_settings: Settings) -> str:
    return local_settings.runs_table


@pytest.fixture
def endpoint(local_settings: Settings) -> str:
    return local_settings.dynamodb_endpoint_url or ""


@pytest.fixture
def injector() -> Iterator[FaultInjector]:
    injector = FaultInjector(seed=7)
    yield injector
    injector.detach()


def in_thread(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["response"] = call()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# ------------------------------------------------------------------ overlapping transactions


def test_a_transaction_touching_an_item_in_flight_is_cancelled_on_the_overlapping_entries(
        endpoint: str, table: str, injector: FaultInjector):
    # Given a transaction in flight on one client (an item put, a counter bumped) …
    first, second = injector.attach(client(endpoint)), injector.attach(client(endpoint))
    held = Held(first)
    thread, outcome = in_thread(lambda: first.transact_write_items(
        TransactItems=[put(table, "run-1"), bump(table, "counter")]))
    assert held.entered.wait(10)

    # When another client's transaction touches the counter and the run among other items
    with pytest.raises(second.exceptions.TransactionCanceledException) as cancelled:
        second.transact_write_items(TransactItems=[put(table, "run-2"), bump(table, "counter"),
                                                   check(table, "run-1"), bump(table, "counter", "other")])
    # … and a single write hits the run while the first transaction is in flight
    with pytest.raises(second.exceptions.TransactionConflictException) as single:
        second.update_item(TableName=table, Key=key("run-1"), UpdateExpression="SET s = :s",
                           ExpressionAttributeValues={":s": {"S": "x"}})
    held.release.set()
    thread.join(10)

    # Then the second is cancelled with TransactionConflict exactly where it overlaps, as AWS says it …
    assert codes(cancelled.value) == ["None", "TransactionConflict", "TransactionConflict", "None"]
    assert cancelled.value.response["CancellationReasons"][1]["Message"] == "Transaction is ongoing for the item"
    assert cancelled.value.response["Message"] == ("Transaction cancelled, please refer cancellation reasons for "
                                                   "specific reasons [None, TransactionConflict, TransactionConflict, None]")
    assert cancelled.value.response["ResponseMetadata"]["RetryAttempts"] == 0  # botocore does not retry a cancel
    assert single.value.response["Error"]["Code"] == "TransactionConflictException"
    # … the first one went through, and the cancelled one wrote nothing
    assert "error" not in outcome
    assert first.get_item(TableName=table, Key=key("counter"))["Item"]["n"] == {"N": "1"}
    assert "Item" not in first.get_item(TableName=table, Key=key("run-2"))
    assert "Item" not in first.get_item(TableName=table, Key=key("counter", "other"))
    assert "s" not in first.get_item(TableName=table, Key=key("run-1"))["Item"]
    assert injector.in_flight == 0
    # … and once the first was answered, the same transaction goes through
    second.transact_write_items(TransactItems=[put(table, "run-2"), bump(table, "counter")])
    assert injector.stats | {"requests": 0} == {
        "requests": 0, "transact_writes": 3, "conflict_overlap": 1, "conflict_random": 0, "conflict_single_write": 1,
        "throttle_cancelled_transaction": 0, "throttle_provisioned": 0, "throttle_throttling": 0, **QUIET_KINDS, "injected": 2}


def test_transactions_on_other_items_do_not_conflict(endpoint: str, table: str, injector: FaultInjector):
    first, second = injector.attach(client(endpoint)), injector.attach(client(endpoint))
    held = Held(first)
    thread, outcome = in_thread(lambda: first.transact_write_items(TransactItems=[put(table, "a"), bump(table, "c1")]))
    assert held.entered.wait(10)
    second.transact_write_items(TransactItems=[put(table, "b"), bump(table, "c2")])
    second.transact_write_items(TransactItems=[put(table, "a", "other")])  # same PK, other SK: another item
    held.release.set()
    thread.join(10)
    assert "error" not in outcome and injector.stats["injected"] == 0


@pytest.mark.parametrize("failure", ["condition failed in DynamoDB", "the connection broke"])
def test_in_flight_tracking_ends_when_the_call_errors(endpoint: str, table: str, injector: FaultInjector,
                                                      failure: str):
    # Given a transaction that fails: DynamoDB Local cancels it (its condition fails), or the
    # send itself raises (an error botocore does not retry, where a connection would break)
    first, second = injector.attach(client(endpoint)), injector.attach(client(endpoint))
    items = [put(table, "run", condition="attribute_exists(PK)"), bump(table, "counter")]
    if failure == "the connection broke":
        held = Held(first, error=RuntimeError("connection reset"))
        held.release.set()
        with pytest.raises(RuntimeError):
            first.transact_write_items(TransactItems=items)
    else:
        with pytest.raises(first.exceptions.TransactionCanceledException) as cancelled:
            first.transact_write_items(TransactItems=items)
        assert codes(cancelled.value) == ["ConditionalCheckFailed", "None"]  # DynamoDB Local's own answer

    # Then nothing stays in flight: a transaction on the same items goes through
    assert injector.in_flight == 0
    second.transact_write_items(TransactItems=[put(table, "run"), bump(table, "counter")])
    assert injector.stats["injected"] == 0


# ------------------------------------------------------------------ rates


def test_rates_are_honoured_within_tolerance_and_counted(endpoint: str, table: str):
    # Given 20% random conflicts and 10% throttling, and a client that never retries
    injector = FaultInjector(conflict_rate=0.2, throttle_rate=0.1, seed=7)
    db = injector.attach(client(endpoint, attempts=1))
    writes: Counter[str] = Counter()
    reads: Counter[str] = Counter()

    # When 400 transactions (on items no other touches) and 400 reads are sent, one at a time
    def tally(seen: Counter[str], call: Any, **request: Any) -> None:
        try:
            call(**request)
            seen["ok"] += 1
        except db.exceptions.TransactionCanceledException as exc:
            seen["throttled_cancel" if "ThrottlingError" in codes(exc) else "conflict"] += 1
        except db.exceptions.ClientError as exc:
            seen[exc.response["Error"]["Code"]] += 1

    for n in range(400):
        tally(writes, db.transact_write_items, TransactItems=[put(table, f"r{n}"), bump(table, f"c{n}")])
        tally(reads, db.get_item, TableName=table, Key=key(f"r{n}"))
    injector.detach()

    # Then about 10% of all requests were throttled …
    throttled = writes["throttled_cancel"] + sum(n for seen in (writes, reads) for code, n in seen.items()
                                                 if code in THROTTLES)
    assert abs(throttled / 800 - 0.1) < 0.035, (writes, reads)
    # … about 20% of the transactions that got past the throttle were cancelled for a conflict …
    past_throttle = writes["ok"] + writes["conflict"]
    assert abs(writes["conflict"] / past_throttle - 0.2) < 0.06, writes
    # … transactions were throttled in both forms, reads in both of theirs …
    assert writes.keys() == {"ok", "conflict", "throttled_cancel", "ProvisionedThroughputExceededException"}
    assert reads.keys() == {"ok", "ProvisionedThroughputExceededException", "ThrottlingException"}
    # … and the counts say exactly what was injected
    assert injector.stats == {
        "requests": 800, "transact_writes": 400, "conflict_overlap": 0, "conflict_random": writes["conflict"],
        "conflict_single_write": 0, "throttle_cancelled_transaction": writes["throttled_cancel"],
        "throttle_provisioned": writes["ProvisionedThroughputExceededException"]
        + reads["ProvisionedThroughputExceededException"],
        "throttle_throttling": reads["ThrottlingException"], **QUIET_KINDS,
        "injected": 800 - writes["ok"] - reads["ok"]}


def test_the_same_seed_injects_the_same_faults(endpoint: str, table: str):
    def outcomes(seed: int) -> list[str]:
        injector = FaultInjector(conflict_rate=0.3, throttle_rate=0.3, seed=seed)
        db = injector.attach(client(endpoint, attempts=1))
        seen = []
        for n in range(40):
            try:
                db.transact_write_items(TransactItems=[put(table, f"s{n}"), bump(table, f"s{n}", "C")])
                seen.append("ok")
            except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
                seen.append(type(exc).__name__ + str(codes(exc) if "CancellationReasons" in exc.response else ""))
        injector.detach()
        return seen

    first = outcomes(3)
    assert outcomes(3) == first and len(set(first)) > 2


# ------------------------------------------------------------------ botocore's retries


def test_a_throttled_single_op_is_retried_by_botocore_and_succeeds(endpoint: str, table: str):
    # Given every other attempt throttled (seed 1's draws), on a client of five attempts
    injector = FaultInjector(throttle_rate=0.5, seed=1)
    db = injector.attach(client(endpoint, attempts=5))

    # When items are put until one put was throttled at least once
    for n in range(20):
        before = injector.stats["injected"]
        response = db.put_item(TableName=table, Item={**key(f"p{n}"), "v": {"N": "1"}})
        if response["ResponseMetadata"]["RetryAttempts"]:
            break
    injector.detach()

    # Then botocore retried it (one retry per throttled attempt) and it succeeded, once
    retries = response["ResponseMetadata"]["RetryAttempts"]
    assert retries >= 1 and injector.stats["injected"] - before == retries
    assert db.get_item(TableName=table, Key=key(f"p{n}"))["Item"]["v"] == {"N": "1"}


def test_with_rate_one_a_single_op_surfaces_the_throttling_exception_after_botocores_max_attempts(
        endpoint: str, table: str):
    injector = FaultInjector(throttle_rate=1.0, seed=2)
    db = injector.attach(client(endpoint, attempts=3))
    with pytest.raises((db.exceptions.ProvisionedThroughputExceededException,
                        db.exceptions.ThrottlingException)) as throttled:
        db.query(TableName=table, KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": "x"}})
    metadata = throttled.value.response["ResponseMetadata"]
    assert metadata["RetryAttempts"] == 2 and metadata["MaxAttemptsReached"] is True
    assert throttled.value.response["Error"]["Code"] in THROTTLES
    assert injector.stats["requests"] == 3 == injector.stats["injected"]


def test_a_throttled_transaction_is_cancelled_unretried_or_retried_as_provisioned_throughput(
        endpoint: str, table: str):
    # Given every attempt throttled, on a client of two attempts
    injector = FaultInjector(throttle_rate=1.0, seed=4)
    db = injector.attach(client(endpoint, attempts=2))
    forms = set()
    for n in range(8):
        with pytest.raises((db.exceptions.TransactionCanceledException,
                            db.exceptions.ProvisionedThroughputExceededException)) as throttled:
            db.transact_write_items(TransactItems=[put(table, f"t{n}"), bump(table, f"t{n}", "C")])
        response = throttled.value.response
        if response["Error"]["Code"] == "TransactionCanceledException":
            # AWS's on-demand answer: one entry throttled, the rest None; botocore does not retry it
            assert sorted(codes(throttled.value)) == ["None", "ThrottlingError"]
            assert response["ResponseMetadata"]["RetryAttempts"] == 0
        else:
            assert response["ResponseMetadata"]["RetryAttempts"] == 1
            assert response["ThrottlingReasons"][0]["reason"] == "TableWriteKeyRangeThroughputExceeded"
        forms.add(response["Error"]["Code"])
    assert forms == {"TransactionCanceledException", "ProvisionedThroughputExceededException"}
    injector.detach()
    # … and nothing was written
    assert db.scan(TableName=table, Select="COUNT")["Count"] == 0


def test_a_conflict_cancelled_transaction_wrote_nothing(endpoint: str, table: str):
    injector = FaultInjector(conflict_rate=1.0, seed=5)
    db = injector.attach(client(endpoint))
    with pytest.raises(db.exceptions.TransactionCanceledException) as cancelled:
        db.transact_write_items(TransactItems=[put(table, "run"), bump(table, "counter"), bump(table, "counter", "W")])
    assert sorted(codes(cancelled.value)) == ["None", "None", "TransactionConflict"]
    injector.detach()
    assert db.scan(TableName=table, Select="COUNT")["Count"] == 0


# ------------------------------------------------------------------ wiring


def test_detach_and_suspended_let_every_request_through(endpoint: str, table: str):
    injector = FaultInjector(conflict_rate=1.0, throttle_rate=1.0, seed=6)
    db = injector.attach(client(endpoint, attempts=1))
    with injector.suspended():
        db.transact_write_items(TransactItems=[put(table, "a")])
    with pytest.raises(db.exceptions.ClientError):
        db.get_item(TableName=table, Key=key("a"))
    injector.detach(db)
    db.transact_write_items(TransactItems=[put(table, "b")])
    assert db.get_item(TableName=table, Key=key("a"))["Item"]
    assert injector.stats["requests"] == 1  # only the one refused while attached and not suspended


def test_control_plane_calls_pass_untouched(endpoint: str, table: str):
    injector = FaultInjector(throttle_rate=1.0, seed=6)
    db = injector.attach(client(endpoint, attempts=1))
    assert db.describe_table(TableName=table)["Table"]["TableName"] == table
    assert injector.stats["requests"] == 0
    injector.detach()


@pytest.mark.parametrize("spec, expected", [
    ("conflict=0.2,throttle=0.1,seed=7", {"conflict_rate": 0.2, "throttle_rate": 0.1, "seed": 7}),
    ("throttle=5%", {"throttle_rate": 0.05}),
    (" conflict = 1 , overlap=off ", {"conflict_rate": 1.0, "overlap": False}),
    ("surface=0.02,guard=0.5", {"surface_rate": 0.02, "guard_rate": 0.5}),
])
def test_a_spec_string_gives_the_injectors_settings(spec: str, expected: dict):
    assert parse_spec(spec) == expected
    injector = FaultInjector.from_spec(spec)
    assert injector.conflict_rate == expected.get("conflict_rate", 0.0)


@pytest.mark.parametrize("spec, refused", [("surface=1", 20), ("surface=1,guard=0", 0), ("guard=1", 20)])
def test_the_stand_ins_calls_are_refused_at_the_guard_rate_else_the_surface_rate(spec: str, refused: int):
    from botocore.exceptions import ClientError

    injector = FaultInjector.from_spec(spec)
    outcomes = []
    for _ in range(20):
        try:
            injector.guard("states", "StartExecution")
            outcomes.append("sent")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    assert outcomes.count("ThrottlingException") == refused
    assert injector.stats["guarded"] == refused


@pytest.mark.parametrize("spec, complaint", [
    ("", "empty"), ("conflict=2", "from 0 to 1"), ("conflict=lots", "a number"), ("jitter=0.1", "name one of"),
    ("seed=x", "integer"), ("throttle", "name=value"), ("overlap=maybe", "on or off"),
])
def test_a_bad_spec_string_says_what_is_wrong(spec: str, complaint: str):
    with pytest.raises(ValueError, match=complaint):
        parse_spec(spec)
