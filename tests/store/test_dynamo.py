"""The store's DynamoDB access tells a lost condition from a busy table (store/dynamo.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from workflow_runs.backoff import Backoff
from workflow_runs.errors import Unavailable
from workflow_runs.store.dynamo import ConditionFailed, Dynamo

REAL = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def cancelled(*codes: str) -> Exception:
    reasons = [{"Code": code, "Message": code} for code in codes]
    response = {"Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                "CancellationReasons": reasons}
    return REAL.exceptions.TransactionCanceledException(response, "TransactWriteItems")


def client_error(code: str, operation: str) -> Exception:
    return REAL.exceptions.from_code(code)({"Error": {"Code": code, "Message": code}}, operation)


class ScriptedClient:
    """Answers each call with the next scripted outcome (an exception to raise, or a reply)."""

    exceptions = REAL.exceptions

    def __init__(self, *outcomes: Any):
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str, dict]] = []

    def _next(self, name: str, kwargs: dict) -> Any:
        self.calls.append((name, kwargs))
        outcome = self.outcomes.pop(0) if self.outcomes else {}
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return lambda **kwargs: self._next(name, kwargs)


def dynamo(client: ScriptedClient, attempts: int = 4) -> tuple[Dynamo, list[float]]:
    slept: list[float] = []
    return Dynamo(client, backoff=Backoff(attempts=attempts, base_seconds=0.01, cap_seconds=0.04),
                  sleep=slept.append, rng=lambda: 1.0), slept


def test_a_failed_condition_is_a_real_answer_naming_its_entries():
    db, slept = dynamo(ScriptedClient(cancelled("None", "ConditionalCheckFailed", "TransactionConflict")))
    with pytest.raises(ConditionFailed) as caught:
        db.transact([{}, {}, {}])
    assert caught.value.failed == (1,)
    assert slept == []  # never retried: someone else won


@pytest.mark.parametrize("reason", ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"])
def test_a_conflict_or_throttle_is_retried_with_growing_capped_backoff(reason: str):
    client = ScriptedClient(cancelled("None", reason), cancelled(reason, "None"), cancelled(reason), {})
    db, slept = dynamo(client)
    db.transact([{}, {}])
    assert len(client.calls) == 4
    assert slept == [0.01, 0.02, 0.04]
    assert db.retried == {reason: 3}


def test_a_table_busy_through_every_retry_is_unavailable_never_a_rejection():
    client = ScriptedClient(*[cancelled("TransactionConflict")] * 10)
    db, slept = dynamo(client, attempts=4)
    with pytest.raises(Unavailable):
        db.transact([{}])
    assert len(client.calls) == 4
    assert len(slept) == 3


def test_a_cancellation_for_a_bad_request_is_raised_as_it_is():
    db, _ = dynamo(ScriptedClient(cancelled("ValidationError")))
    with pytest.raises(REAL.exceptions.TransactionCanceledException):
        db.transact([{}])


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException",
                                  "RequestLimitExceeded"])
def test_a_single_request_botocore_gave_up_on_is_unavailable(code: str):
    db, _ = dynamo(ScriptedClient(client_error(code, "PutItem")))
    with pytest.raises(Unavailable):
        db.put(TableName="t", Item={})


def test_a_single_write_whose_condition_failed_is_condition_failed():
    db, _ = dynamo(ScriptedClient(client_error("ConditionalCheckFailedException", "PutItem")))
    with pytest.raises(ConditionFailed):
        db.put(TableName="t", Item={})


def test_batch_get_asks_again_for_unprocessed_keys():
    first = {"Responses": {"t": [{"k": {"S": "1"}}]}, "UnprocessedKeys": {"t": {"Keys": [{"k": {"S": "2"}}]}}}
    second = {"Responses": {"t": [{"k": {"S": "2"}}]}}
    client = ScriptedClient(first, second)
    db, slept = dynamo(client)
    items = db.batch_get("t", [{"k": {"S": "1"}}, {"k": {"S": "2"}}])
    assert sorted(i["k"]["S"] for i in items) == ["1", "2"]
    assert client.calls[1][1]["RequestItems"] == {"t": {"Keys": [{"k": {"S": "2"}}]}}
    assert len(slept) == 1


def test_a_single_write_meeting_a_transaction_in_flight_is_retried():
    conflict = client_error("TransactionConflictException", "PutItem")
    client = ScriptedClient(conflict, conflict, {})
    db, slept = dynamo(client)
    db.put(TableName="t", Item={})
    assert len(client.calls) == 3 and len(slept) == 2
    assert db.retried == {"TransactionConflictException": 2}


def test_a_single_write_in_conflict_through_every_retry_is_unavailable():
    db, slept = dynamo(ScriptedClient(*[client_error("TransactionConflictException", "UpdateItem")] * 10), attempts=4)
    with pytest.raises(Unavailable):
        db.update(TableName="t", Key={})
    assert len(slept) == 3
