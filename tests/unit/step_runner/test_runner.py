"""The step runner against a real store (moto): what each invocation leaves in the table."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from workflow_runs import keys
from workflow_runs.models import RunInput, Status, WorkflowDefinition
from workflow_runs.secrets import get_sealer
from workflow_runs.settings import Settings
from workflow_runs.store import NewRun, RunStore
from workflow_runs_dev import dynamodb_local
from workflow_runs_step_runner import handler as handler_module
from workflow_runs_step_runner.runner import StepRetryableError, activity_run_id, run_step
from workflow_runs_step_runner.steps import registry as real_registry
from workflow_runs_step_runner.steps.base import StepContext, StepError, StepOutcome

from tests.support import dynamodb, make_settings

TENANT = "t1"
SECRET = "s3cr3t-token-value"


class FakeRegistry:
    """The real step types, with some replaced by test doubles."""

    def __init__(self, **types: Any):
        self.types = types

    def get(self, type_name: str) -> Any:
        return self.types.get(type_name) or real_registry.get(type_name)


class Scripted:
    """A step type whose runs follow a script: an exception to raise, or outputs to return."""

    def __init__(self, *script: Any, on_run: Callable[[StepContext], None] | None = None):
        self.script = list(script)
        self.contexts: list[StepContext] = []
        self.on_run = on_run

    def run(self, ctx: StepContext) -> StepOutcome:
        self.contexts.append(ctx)
        if self.on_run:
            self.on_run(ctx)
        result = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(result, BaseException):
            raise result
        return StepOutcome(outputs=result)


@dataclass
class Bench:
    settings: Settings
    store: RunStore

    def new_run(self, steps: list[dict], *, envs: dict[str, str] | None = None,
                inputs: dict[str, Any] | None = None) -> str:
        inputs = inputs or {}
        definition = WorkflowDefinition.model_validate({
            "name": "Test workflow",
            "inputs": [{"name": name, "type": "string"} for name in inputs],
            "steps": steps,
        })
        workflow = self.store.put_workflow(TENANT, str(uuid.uuid4()), definition)
        run_id = str(uuid.uuid4())
        sealed = get_sealer(self.settings).seal(envs, run_id) if envs else None
        self.store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow, sealed_envs=sealed,
                                     inputs=[RunInput(name=k, value=v) for k, v in inputs.items()]))
        return run_id

    def invoke(self, run_id: str, attempt: int = 0, registry: Any = None, **event: Any) -> dict:
        return run_step({"runId": run_id, "attempt": attempt, **event}, settings=self.settings, store=self.store,
                        sealer=get_sealer(self.settings), registry=registry)

    def run(self, run_id: str):
        return self.store.get_run(TENANT, run_id)


@pytest.fixture
def bench() -> Iterator[Bench]:
    from moto import mock_aws

    with mock_aws():
        settings = make_settings(None)
        client = dynamodb(None)
        dynamodb_local.create_tables(client, settings.runs_table, settings.events_table)
        yield Bench(settings, RunStore(settings, client=client))


class CountingClient:
    """The store's client, counting the write calls that reach DynamoDB."""

    WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")

    def __init__(self, client: Any):
        self._client = client
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name in self.WRITES:
            def counted(**kwargs: Any) -> Any:
                self.writes.append(name)
                return attribute(**kwargs)
            return counted
        return attribute


TWO_STEPS = [
    {"id": "a", "name": "First", "type": "transform", "config": {"output": "{{ inputs.topic }}"}},
    {"id": "b", "type": "transform", "config": {"output": {"echo": "{{ steps.a.outputs.value }}!"}}},
]


def counting_bench(bench: Bench) -> tuple[Bench, CountingClient]:
    counting = CountingClient(bench.store.client)
    return Bench(bench.settings, RunStore(bench.settings, client=counting)), counting


def test_first_step_starts_the_run_and_records_a_completed_attempt_one(bench):
    run_id = bench.new_run(TWO_STEPS, inputs={"topic": "tides"})

    reply = bench.invoke(run_id)

    assert reply == {"runId": run_id, "next": "step", "waitSeconds": 0}
    run = bench.run(run_id)
    assert run.status is Status.RUNNING
    (activity,) = run.activity_runs
    assert (activity.step_id, activity.step_name, activity.status, activity.attempt, activity.outputs) == (
        "a", "First", Status.COMPLETED, 1, {"value": "tides"})
    assert activity.id == activity_run_id(run_id, 0, 1)


def test_last_step_sees_earlier_outputs_and_completes_the_run(bench):
    run_id = bench.new_run(TWO_STEPS, inputs={"topic": "tides"})

    replies = [bench.invoke(run_id)["next"], bench.invoke(run_id)["next"]]

    assert replies == ["step", "done"]
    run = bench.run(run_id)
    assert run.status is Status.COMPLETED
    assert [(a.step_id, a.outputs) for a in run.activity_runs] == [
        ("a", {"value": "tides"}), ("b", {"echo": "tides!"})]
    assert bench.store.counts(TENANT, run.workflow_id)["completed"] == 1


def test_retryable_error_with_attempts_left_raises_and_the_retry_is_attempt_two(bench):
    flaky = Scripted(StepError("upstream answered 503", retryable=True), {"ok": True})
    registry = FakeRegistry(http=flaky)
    run_id = bench.new_run([{"id": "fetch", "type": "http", "config": {"url": "https://example.com"},
                              "retry": {"maxAttempts": 3}}])

    with pytest.raises(StepRetryableError, match="503"):
        bench.invoke(run_id, attempt=0, registry=registry)
    reply = bench.invoke(run_id, attempt=1, registry=registry)

    assert reply["next"] == "done"
    run = bench.run(run_id)
    assert run.status is Status.COMPLETED
    assert [(a.attempt, a.status, a.outputs) for a in run.activity_runs] == [
        (1, Status.FAILED, {"error": "upstream answered 503"}), (2, Status.COMPLETED, {"ok": True})]
    assert [c.attempt for c in flaky.contexts] == [1, 2]


def test_retryable_error_on_the_last_attempt_fails_the_run_with_the_step_id(bench):
    registry = FakeRegistry(http=Scripted(StepError("upstream answered 503", retryable=True)))
    run_id = bench.new_run([{"id": "fetch", "type": "http", "config": {"url": "https://example.com"},
                              "retry": {"maxAttempts": 2}}, *TWO_STEPS])

    with pytest.raises(StepRetryableError):
        bench.invoke(run_id, attempt=0, registry=registry)
    reply = bench.invoke(run_id, attempt=1, registry=registry)

    assert reply["next"] == "failed"
    run = bench.run(run_id)
    assert run.status is Status.FAILED
    assert (run.error.message, run.error.step_id) == ("upstream answered 503", "fetch")
    assert [(a.step_id, a.attempt, a.status) for a in run.activity_runs] == [
        ("fetch", 1, Status.FAILED), ("fetch", 2, Status.FAILED)]


def test_non_retryable_error_fails_at_once_even_with_attempts_left(bench):
    run_id = bench.new_run([{"id": "guard", "type": "fail", "config": {"message": "no {{ inputs.topic }}"},
                              "retry": {"maxAttempts": 5}}, *TWO_STEPS], inputs={"topic": "tides"})

    reply = bench.invoke(run_id)

    assert reply["next"] == "failed"
    run = bench.run(run_id)
    assert (run.status, run.error.message, run.error.step_id) == (Status.FAILED, "no tides", "guard")
    assert [a.step_id for a in run.activity_runs] == ["guard"]


def test_unexpected_exception_in_a_step_fails_the_run_without_its_text(bench):
    registry = FakeRegistry(transform=Scripted(KeyError("internal detail")))
    run_id = bench.new_run(TWO_STEPS, inputs={"topic": "x"})

    assert bench.invoke(run_id, registry=registry)["next"] == "failed"

    error = bench.run(run_id).error
    assert error.step_id == "a" and "KeyError" in error.message and "internal detail" not in error.message


def test_terminal_run_is_left_alone(bench):
    run_id = bench.new_run(TWO_STEPS, inputs={"topic": "x"})
    bench.store.transition_run(bench.store.get_run_record(run_id), Status.CANCELLED, cancel_reason="user")
    counted, counting = counting_bench(bench)

    assert counted.invoke(run_id)["next"] == "done"

    assert counting.writes == []
    run = bench.run(run_id)
    assert run.status is Status.CANCELLED and run.activity_runs == []


def test_cancel_while_the_step_runs_discards_its_result(bench):
    def cancel_meanwhile(ctx: StepContext) -> None:
        record = bench.store.get_run_record(ctx.run_id)
        bench.store.cancel_run(record, "user")

    registry = FakeRegistry(transform=Scripted({"late": True}, on_run=cancel_meanwhile))
    run_id = bench.new_run(TWO_STEPS, inputs={"topic": "x"})

    assert bench.invoke(run_id, registry=registry)["next"] == "done"

    run = bench.run(run_id)
    assert run.status is Status.CANCELLED and run.cancel_reason == "user"
    assert [(a.status, a.outputs) for a in run.activity_runs] == [(Status.CANCELLED, None)]


def test_wait_step_parks_run_and_activity_then_the_next_invocation_goes_on(bench):
    run_id = bench.new_run([{"id": "pause", "type": "wait", "config": {"seconds": 1}}, *TWO_STEPS],
                     inputs={"topic": "x"})

    first = bench.invoke(run_id)

    assert first == {"runId": run_id, "next": "wait", "waitSeconds": 1}
    run = bench.run(run_id)
    assert run.status is Status.WAITING
    assert [(a.step_id, a.status) for a in run.activity_runs] == [("pause", Status.WAITING)]

    second = bench.invoke(run_id)  # after the Wait state (1 s is within the clock tolerance)

    assert second["next"] == "step"
    run = bench.run(run_id)
    assert run.status is Status.RUNNING
    assert [(a.step_id, a.status) for a in run.activity_runs] == [
        ("pause", Status.COMPLETED), ("a", Status.COMPLETED)]


def test_wait_as_last_step_completes_the_run_when_it_ends(bench):
    run_id = bench.new_run([{"id": "pause", "type": "wait", "config": {"seconds": 0}}])

    assert bench.invoke(run_id)["next"] == "done"  # a zero wait needs no Wait state
    assert bench.run(run_id).status is Status.COMPLETED


def test_repeated_invocation_during_a_wait_keeps_waiting(bench):
    run_id = bench.new_run([{"id": "pause", "type": "wait", "config": {"seconds": 300}}, *TWO_STEPS],
                     inputs={"topic": "x"})
    bench.invoke(run_id)

    again = bench.invoke(run_id, attempt=1)  # e.g. a Lambda service retry of the same state

    assert again["next"] == "wait" and 295 <= again["waitSeconds"] <= 300
    run = bench.run(run_id)
    assert run.status is Status.WAITING and [a.status for a in run.activity_runs] == [Status.WAITING]


def test_env_values_are_masked_in_outputs_errors_and_thinking(bench):
    def think(ctx: StepContext) -> None:
        ctx.emit_thinking(f"using {ctx.env['TOKEN']} now")

    registry = FakeRegistry(llm=Scripted({"answer": f"the token is {SECRET}"}, on_run=think))
    run_id = bench.new_run([
        {"id": "show", "type": "transform", "config": {"output": "token={{ env.TOKEN }}"}},
        {"id": "ask", "type": "llm", "config": {"prompt": "hi"}},
        {"id": "boom", "type": "fail", "config": {"message": "bad {{ env.TOKEN }}"}},
    ], envs={"TOKEN": SECRET})

    assert [bench.invoke(run_id, registry=registry)["next"] for _ in range(3)] == ["step", "step", "failed"]

    run = bench.run(run_id)
    assert [a.outputs for a in run.activity_runs] == [
        {"value": "token=***"}, {"answer": "the token is ***"}, {"error": "bad ***"}]
    assert run.error.message == "bad ***"
    items = bench.store.client.query(TableName=bench.settings.runs_table, KeyConditionExpression="PK = :pk",
                               ExpressionAttributeValues={":pk": {"S": keys.run_pk(run_id)}})["Items"]
    thinking = [i["content"]["S"] for i in items if i["SK"]["S"].startswith(keys.THINKING_SK_PREFIX)]
    assert "".join(thinking) == "using *** now"  # text that might still grow into a secret is held back
    assert SECRET not in json.dumps(items)


def test_reasoning_deltas_are_coalesced_into_few_items_in_order_and_complete(bench):
    # A model streaming 40 deltas within one window: the first is written at once, the
    # rest together at the step's end, before the step's own end (workflow_runs_step_runner.thinking).
    deltas = [f"delta {i}; " for i in range(40)]

    def think(ctx: StepContext) -> None:
        for delta in deltas:
            ctx.emit_thinking(delta)

    registry = FakeRegistry(llm=Scripted({"answer": "ok"}, on_run=think))
    run_id = bench.new_run([{"id": "ask", "type": "llm", "config": {"prompt": "hi"}}])
    assert bench.invoke(run_id, registry=registry)["next"] == "done"

    items = bench.store.client.query(TableName=bench.settings.runs_table, KeyConditionExpression="PK = :pk",
                                     ExpressionAttributeValues={":pk": {"S": keys.run_pk(run_id)}})["Items"]
    thinking = [i["content"]["S"] for i in items if i["SK"]["S"].startswith(keys.THINKING_SK_PREFIX)]
    assert "".join(thinking) == "".join(deltas)  # in SK order: the order the text arrived
    assert 2 <= len(thinking) < 10  # 2 unless this machine stalls for a window in between


@pytest.mark.parametrize("count", [1, 3, 4])
def test_a_step_costs_at_most_three_writes_the_run_s_end_included(bench, count):
    steps = [{"id": f"s{i}", "type": "transform", "config": {"output": str(i)}} for i in range(count)]
    run_id = bench.new_run(steps)
    counted, counting = counting_bench(bench)

    per_step = []
    for _ in steps:
        before = len(counting.writes)
        counted.invoke(run_id)
        per_step.append(len(counting.writes) - before)

    # The first: its start (with the run's move to running) and its end. A later one: its
    # attempt, the run's step count, its end (plain writes, billed once). The last: its start
    # in one transaction, its end, the run's completion (a write of its own).
    assert per_step == [2 if count > 1 else 3] + [3] * (count - 1)
    assert bench.run(run_id).status is Status.COMPLETED


class LambdaKilled(BaseException):
    """What a Lambda timeout looks like from inside: the invocation just stops."""


def test_catch_fails_the_run_with_the_step_in_flight(bench):
    run_id = bench.new_run(TWO_STEPS, inputs={"topic": "x"})
    with pytest.raises(LambdaKilled):
        bench.invoke(run_id, registry=FakeRegistry(transform=Scripted(LambdaKilled())))
    assert [a.status for a in bench.run(run_id).activity_runs] == [Status.RUNNING]
    cause = {"Error": "Sandbox.Timedout", "Cause": json.dumps({"errorMessage": "Task timed out after 300 s"})}

    reply = bench.invoke(run_id, action="fail", cause=cause)

    assert reply["next"] == "failed"
    run = bench.run(run_id)
    assert (run.status, run.error.step_id, run.error.message) == (Status.FAILED, "a", "the step timed out")
    assert [a.status for a in run.activity_runs] == [Status.FAILED]


def test_catch_leaves_an_ended_run_as_it_is(bench):
    run_id = bench.new_run(TWO_STEPS, inputs={"topic": "x"})
    bench.store.transition_run(bench.store.get_run_record(run_id), Status.CANCELLED, cancel_reason="user")

    bench.invoke(run_id, action="fail", cause={"Error": "StepRetryableError", "Cause": "{}"})

    run = bench.run(run_id)
    assert run.status is Status.CANCELLED and run.error is None


def test_catch_of_exhausted_retries_keeps_the_step_message(bench):
    run_id = bench.new_run(TWO_STEPS, inputs={"topic": "x"})
    cause = {"Error": "StepRetryableError",
             "Cause": json.dumps({"errorType": "StepRetryableError", "errorMessage": "answered 503"})}

    bench.invoke(run_id, action="fail", cause=cause)

    error = bench.run(run_id).error
    assert (error.message, error.step_id) == ("answered 503", "a")


def test_unknown_run_is_done(bench):
    assert bench.invoke(str(uuid.uuid4()))["next"] == "done"


def test_lambda_handler_builds_its_collaborators_from_settings(bench, monkeypatch):
    settings = bench.settings
    for name, value in {"RUNS_TABLE": settings.runs_table, "EVENTS_TABLE": settings.events_table,
                        "LOCAL_SECRET_KEY": settings.local_secret_key}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DYNAMODB_ENDPOINT_URL", raising=False)
    from workflow_runs.settings import get_settings
    get_settings.cache_clear()
    handler_module.collaborators.cache_clear()
    try:
        run_id = bench.new_run(TWO_STEPS[:1], inputs={"topic": "x"}, envs={"TOKEN": SECRET})

        assert handler_module.handler({"runId": run_id, "attempt": 0}, None)["next"] == "done"
    finally:
        get_settings.cache_clear()
        handler_module.collaborators.cache_clear()
    assert bench.run(run_id).status is Status.COMPLETED


class ConflictingClient(CountingClient):
    """The store's client as DynamoDB under load answers it: the next `conflicts`
    transactions are cancelled for TransactionConflict (another transaction touched an item)."""

    def __init__(self, client: Any, conflicts: int):
        super().__init__(client)
        self.conflicts = conflicts

    def __getattr__(self, name: str) -> Any:
        attribute = super().__getattr__(name)
        if name != "transact_write_items":
            return attribute

        def conflicting(**kwargs: Any) -> Any:
            if self.conflicts:
                self.conflicts -= 1
                reasons = [{"Code": "TransactionConflict"} for _ in kwargs["TransactItems"]]
                raise self._client.exceptions.TransactionCanceledException(
                    {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                     "CancellationReasons": reasons}, "TransactWriteItems")
            return attribute(**kwargs)
        return conflicting


def test_a_conflict_on_the_last_steps_completion_is_retried_not_dropped(bench):
    # Given a one-step run whose completion meets two conflicts
    run_id = bench.new_run(TWO_STEPS[:1], inputs={"topic": "tides"})
    conflicting = ConflictingClient(bench.store.client, conflicts=0)
    store = RunStore(bench.settings, client=conflicting)
    store.db.sleep = lambda _: None
    original = store.transition_run

    def conflict_on_completion(record, new, **kwargs):
        if new is Status.COMPLETED:
            conflicting.conflicts = 2
        return original(record, new, **kwargs)

    store.transition_run = conflict_on_completion  # type: ignore[method-assign]
    # When the runner runs it
    reply = run_step({"runId": run_id, "attempt": 0}, settings=bench.settings, store=store,
                     sealer=get_sealer(bench.settings))
    # Then the completion went through after the conflicts: nothing was lost or misread
    assert reply["next"] == "done"
    assert conflicting.conflicts == 0
    assert bench.run(run_id).status is Status.COMPLETED
    assert store.db.retried == {"TransactionConflict": 2}
