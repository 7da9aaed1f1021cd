"""What the init phase rehearses: the store's operations and a run read, answered in this
process. Nothing may be sent (the client here points at a closed port: a request that left
would fail), and what the rehearsal answers must read as the store reads a real run."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError
from workflow_runs.errors import NotFound
from workflow_runs.models import Status
from workflow_runs.store import RunStore, dynamodb_client, rehearsal, warm_up

from tests.support import make_settings

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens there
RUN = "00000000-0000-4000-8000-0000000000aa"


@pytest.fixture
def unreachable_store() -> RunStore:
    settings = make_settings(NOWHERE)
    dynamodb_client.cache_clear()
    return RunStore(settings, client=dynamodb_client(NOWHERE))


def test_the_warm_up_runs_every_operation_on_both_tables_and_sends_nothing(unreachable_store: RunStore):
    sent: list[str] = []
    unreachable_store.client.meta.events.register("before-call.dynamodb", lambda model, **_: sent.append(model.name))

    warm_up(unreachable_store, times=2)

    assert sorted(set(sent)) == ["BatchGetItem", "DeleteItem", "GetItem", "PutItem", "Query", "TransactWriteItems",
                                 "UpdateItem"]
    assert len(sent) == 2 * 2 * 7  # two rounds, two tables, seven operations


def test_after_the_rehearsal_the_client_sends_again(unreachable_store: RunStore):
    with rehearsal.answered_here(unreachable_store.client, {}):
        unreachable_store.client.list_tables()

    with pytest.raises(EndpointConnectionError):
        unreachable_store.client.list_tables()


def test_a_rehearsed_run_read_reads_as_the_store_reads_a_run(unreachable_store: RunStore):
    items = rehearsal.run_items(unreachable_store, "priming", RUN)
    answers = {"Query": {"Items": items, "Count": len(items), "ScannedCount": len(items)}}

    with rehearsal.answered_here(unreachable_store.client, answers):
        run = unreachable_store.get_run("priming", RUN)
        with pytest.raises(NotFound):
            unreachable_store.get_run("another-tenant", RUN)

    assert run.id == RUN and run.status is Status.SCHEDULED and run.workflow_name == "rehearsal"
    assert [(step.step_id, step.status, step.outputs) for step in run.activity_runs] == [
        ("a", Status.COMPLETED, {"output": "tides"})]


@pytest.mark.parametrize(("initialization", "rounds"), [("snap-start", rehearsal.REHEARSALS), ("on-demand", 1)])
def test_rehearsals_repeat_only_where_a_snapshot_keeps_them(unreachable_store: RunStore, initialization: str,
                                                            rounds: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", initialization)
    sent: list[str] = []
    unreachable_store.client.meta.events.register("before-call.dynamodb", lambda model, **_: sent.append(model.name))

    warm_up(unreachable_store)

    assert sent.count("Query") == 2 * rounds  # both tables


def test_a_rehearsed_step_reads_as_the_store_reads_a_scheduled_run_of_a_version_of_its_own(
        unreachable_store: RunStore):
    read = []
    for number in (0, 1):
        with rehearsal.answered_here(unreachable_store.client, rehearsal.step_answers(unreachable_store, "priming",
                                                                                      RUN, number)):
            read.append(unreachable_store.get_run_record(RUN))

    for number, record in enumerate(read):
        assert record.id == RUN and record.tenant == "priming" and record.status is Status.SCHEDULED
        assert record.run.activity_runs == [] and record.sealed_envs is None  # no envs: nothing to unseal
        assert [(step.id, step.type, step.config) for step in record.steps] == [
            ("a", "transform", {"output": f"{{{{ inputs.topic }}}} (rehearsal {number})"})]
    # Each round a version of its own: read (not found in the store's cache) and compiled anew.
    assert read[0].run.workflow_id != read[1].run.workflow_id
