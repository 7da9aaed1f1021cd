"""The write paths a retry and a conditional workflow edit add, on DynamoDB Local: races
between callers (exactly one retry per failed run; of two editors of one version, one wins),
and every new write under injected conflicts and throttles (`FaultInjector`), from several
threads of one tenant, storing exactly what a calm table would."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from workflow_runs.errors import Conflict, Unavailable
from workflow_runs.models import ActivityRun, RunError, RunInput, Status, WorkflowDefinition, utc_now
from workflow_runs.retries import plan_retry
from workflow_runs.service import RunService
from workflow_runs.store import NewRun, RunStore
from workflow_runs_dev.faults import FaultInjector

from tests.store.test_store_under_faults import until_done

pytestmark = pytest.mark.dynamodb_local

T = TypeVar("T")
TENANT = "retries"
DEFINITION = WorkflowDefinition.model_validate({"name": "Retried", "steps": [
    {"id": "a", "type": "transform", "config": {"output": "a"}},
    {"id": "b", "type": "transform", "config": {"output": "b"}},
    {"id": "c", "type": "transform", "config": {"output": "c"}},
]})


class NoOrchestrator:
    """Starts nothing (the runs stay scheduled); records what it was asked to start."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._lock = threading.Lock()

    def start(self, run_id: str, orchestration: str = "standard") -> None:
        with self._lock:
            self.started.append(run_id)

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = "standard") -> bool:
        return False

    def describe(self, run_id: str) -> str | None:
        return None


def fail_after_two_steps(store: RunStore, workflow: Any, *, calm: Callable[[Callable[[], T]], T] = lambda c: c()) -> str:
    """A run whose steps a and b completed and whose step c failed."""
    run_id = str(uuid.uuid4())
    record, _ = calm(lambda: store.create_run(NewRun(run_id=run_id, tenant=TENANT, workflow=workflow,
                                                     inputs=[RunInput(name="n", value=1)])))
    now = utc_now()

    def step(index: int, status: Status) -> ActivityRun:
        return ActivityRun(id=str(uuid.uuid4()), step_id="abc"[index], step_name=None, status=status, attempt=1,
                           outputs={"out": "abc"[index]} if status is Status.COMPLETED else None,
                           created_at=now, updated_at=now)

    record = calm(lambda: store.transition_run(record, Status.RUNNING, activities=[(0, step(0, Status.RUNNING), None)]))
    for index in range(3):
        if index:
            assert calm(lambda i=index: store.put_activity(run_id, i, step(i, Status.RUNNING)))
        final = Status.COMPLETED if index < 2 else Status.FAILED
        assert calm(lambda i=index, f=final: store.finish_activity(run_id, i, step(i, f), [Status.RUNNING]))
    calm(lambda: store.transition_run(record, Status.FAILED, error=RunError(message="c broke", step_id="c")))
    return run_id


@pytest.fixture
def service(local_store: RunStore) -> RunService:
    return RunService(local_store, NoOrchestrator(), local_store.settings)


def test_many_retries_of_one_run_at_once_make_exactly_one(service: RunService):
    store = service.store
    workflow = store.put_workflow(TENANT, str(uuid.uuid4()), DEFINITION)
    run_id = fail_after_two_steps(store, workflow)
    barrier = threading.Barrier(8)

    def retry(_: int) -> str:
        barrier.wait()
        try:
            return service.retry(TENANT, run_id).id
        except Conflict as exc:
            return f"409: {exc.details}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(retry, range(8)))

    created = [o for o in outcomes if not o.startswith("409")]
    assert len(created) == 1, outcomes
    winner = created[0]
    # Every loser is told which run won (whether it lost at the read or in the write).
    assert outcomes.count(f"409: workflow run {run_id} was already retried by run {winner}") == 7, outcomes
    assert store.get_run(TENANT, run_id).retried_by == winner
    assert service.orchestrator.started == [winner]
    counts = store.counts(TENANT, workflow.id)
    assert (counts["failed"], counts["scheduled"], sum(counts.values())) == (1, 1, 2)
    retry = store.get_run(TENANT, winner)
    assert [(a.step_id, a.reused, a.outputs) for a in retry.activity_runs] == [
        ("a", True, {"out": "a"}), ("b", True, {"out": "b"})]


def test_many_retries_with_one_idempotency_key_at_once_all_get_the_one_retry(service: RunService):
    store = service.store
    workflow = store.put_workflow(TENANT, str(uuid.uuid4()), DEFINITION)
    run_id = fail_after_two_steps(store, workflow)
    barrier = threading.Barrier(6)

    def retry(_: int) -> str:
        barrier.wait()
        for _ in range(20):  # the claim's holder may still be mid-write: Conflict says try again
            try:
                return service.retry(TENANT, run_id, "one-key", subject="me").id
            except Conflict as exc:
                if "concurrent request" not in str(exc.details):
                    raise
        raise AssertionError("never replayed")

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = set(pool.map(retry, range(6)))

    assert len(outcomes) == 1
    assert store.get_run(TENANT, run_id).retried_by == outcomes.pop()
    assert sum(store.counts(TENANT, workflow.id).values()) == 2


def test_two_editors_of_one_version_at_once_one_wins_one_is_409(local_store: RunStore):
    workflow_id = str(uuid.uuid4())
    local_store.put_workflow(TENANT, workflow_id, DEFINITION)
    barrier = threading.Barrier(2)

    def edit(name: str, version: int) -> str:
        barrier.wait()
        try:
            return local_store.put_workflow(TENANT, workflow_id, DEFINITION.model_copy(update={"name": name}),
                                            expected_version=version).name
        except Conflict:
            return "409"

    for version in range(1, 6):  # each round its own race, both editors having read `version`
        barrier.reset()
        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = sorted(pool.map(lambda name, v=version: edit(name, v), ["one", "two"]))
        assert outcomes in (["409", "one"], ["409", "two"]), outcomes
        stored = local_store.get_workflow(TENANT, workflow_id)
        assert (stored.version, stored.name) == (version + 1, outcomes[1])


# ------------------------------------------------------------------ under injected faults




def test_retries_under_conflicts_and_throttles_make_one_retry_per_run_with_its_steps(faulty):
    store, faults = faulty
    workflow = until_done(lambda: store.put_workflow(TENANT, str(uuid.uuid4()), DEFINITION))
    with faults.suspended():
        failed = [fail_after_two_steps(store, workflow) for _ in range(8)]

    def retry(run_id: str) -> str:
        # Two callers per run, each trying again on Unavailable (nothing was written).
        source = store.get_run_record(run_id)
        new_id = str(uuid.uuid4())
        new = NewRun(run_id=new_id, tenant=TENANT, workflow=workflow, inputs=source.run.inputs, retry_of=run_id)
        try:
            record, _ = until_done(lambda: store.create_retry(new, source))
        except Conflict:
            return "409"
        assert until_done(lambda: store.copy_reused(record.id, plan_retry(source, record.id).reused))
        # A second copy (a repeat resuming the start, or the step runner) finds them there.
        assert until_done(lambda: store.copy_reused(record.id, plan_retry(source, record.id).reused)) is False
        return record.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(retry, failed + failed))

    assert faults.stats["conflict_random"] + faults.stats["conflict_overlap"] > 0
    assert store.db.retried
    with faults.suspended():
        retried_by = {run_id: store.get_run(TENANT, run_id).retried_by for run_id in failed}
        counts = store.counts(TENANT, workflow.id)
        retries = [store.get_run(TENANT, r) for r in retried_by.values() if r]
    winners = [o for o in outcomes if o != "409"]
    assert sorted(winners) == sorted(r for r in retried_by.values() if r) and len(winners) == len(failed)
    assert Counter(outcomes)["409"] == len(failed)
    assert {k: v for k, v in counts.items() if v} == {"failed": len(failed), "scheduled": len(failed)}
    for retry in retries:
        assert [(a.step_id, a.status, a.reused) for a in retry.activity_runs] == [
            ("a", Status.COMPLETED, True), ("b", Status.COMPLETED, True)]


def test_conditional_edits_under_conflicts_and_throttles_apply_each_edit_once(faulty):
    store, faults = faulty
    workflow_id = str(uuid.uuid4())
    until_done(lambda: store.put_workflow(TENANT, workflow_id, DEFINITION))
    applied: list[str] = []
    lock = threading.Lock()

    def editor(n: int) -> None:
        # An optimistic editor: read the version, PUT with it; on 409 read again and re-apply.
        for _ in range(200):
            try:
                version = until_done(lambda: store.get_workflow(TENANT, workflow_id)).version
                name = f"edit-{n}"
                until_done(lambda v=version, edited=name: store.put_workflow(
                    TENANT, workflow_id, DEFINITION.model_copy(update={"name": edited}), expected_version=v))
                with lock:
                    applied.append(name)
                return
            except Conflict:
                continue
        raise AssertionError(f"editor {n} never got its edit in")

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(editor, range(6)))

    assert faults.stats["throttle_provisioned"] + faults.stats["throttle_throttling"] > 0
    with faults.suspended():
        stored = store.get_workflow(TENANT, workflow_id)
        versions = [store.workflow_version(TENANT, workflow_id, v).name for v in range(2, stored.version + 1)]
    # Every edit landed exactly once, each on the version its editor read: no edit lost.
    assert sorted(applied) == [f"edit-{n}" for n in range(6)]
    assert stored.version == 7 and versions == applied and stored.name == applied[-1]


def test_unavailable_on_a_retry_leaves_nothing_written(faulty):
    store, faults = faulty
    workflow = until_done(lambda: store.put_workflow(TENANT, str(uuid.uuid4()), DEFINITION))
    with faults.suspended():
        run_id = fail_after_two_steps(store, workflow)
    source = store.get_run_record(run_id)
    always = FaultInjector(conflict_rate=1.0, throttle_rate=0.0, seed=3)
    faults.detach()
    always.attach(store.db.client)
    try:
        with pytest.raises(Unavailable):
            store.create_retry(NewRun(run_id=str(uuid.uuid4()), tenant=TENANT, workflow=workflow,
                                      inputs=source.run.inputs, retry_of=run_id), source)
    finally:
        always.detach()
        faults.attach(store.db.client)
    with faults.suspended():
        assert store.get_run(TENANT, run_id).retried_by is None
        assert sum(store.counts(TENANT, workflow.id).values()) == 1
