"""DynamoDB requests per endpoint, counted on DynamoDB Local: get = 1, dashboard = 1,
list = 1 Query per shard plus one counter read (and, tenant-wide, one Query for the
tenant's workflows whose counters it sums)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from workflow_runs import keys
from workflow_runs.devkeys import DevIdentity
from workflow_runs.models import WorkflowDefinition
from workflow_runs.service import ExecuteRequest, RunService
from workflow_runs.store import RunStore
from workflow_runs_api.app import create_app

from tests.api.conftest import WORKFLOW, RecordingOrchestrator

RUNS = "/api/v1/workflow-runs"


class RequestCounter:
    def __init__(self, client) -> None:
        self.calls: Counter[str] = Counter()
        client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model, **_) -> None:
        self.calls[model.name] += 1

    def reset(self) -> None:
        self.calls.clear()


@pytest.fixture
def counted(local_store: RunStore):
    identity = DevIdentity.generate()
    settings = identity.settings_for(local_store.settings)
    service = RunService(local_store, RecordingOrchestrator(), settings)
    workflow_id = str(uuid.uuid4())
    service.put_workflow("t1", workflow_id, WorkflowDefinition.model_validate(WORKFLOW))
    run_ids = [service.start_run("t1", ExecuteRequest(workflow_id=workflow_id, inputs={"topic": "x"})).id for _ in range(3)]
    client = TestClient(create_app(settings=settings, service=service, verifier=identity.verifier(settings)))
    counter = RequestCounter(local_store.client)
    return client, {"Authorization": f"Bearer {identity.token(tenant='t1')}"}, counter, workflow_id, run_ids


def test_get_is_one_query(counted):
    client, headers, counter, _, run_ids = counted
    counter.reset()
    assert client.get(f"{RUNS}/{run_ids[0]}", headers=headers).status_code == 200
    assert counter.calls == {"Query": 1}


def test_dashboard_is_one_read(counted):
    client, headers, counter, workflow_id, _ = counted
    counter.reset()
    assert client.get(f"{RUNS}/dashboard/{workflow_id}", headers=headers).json()["total"] == 3
    assert counter.calls == {"BatchGetItem": 1}  # the workflow's counter shards


@pytest.mark.parametrize("params", [{}, {"status": "scheduled"}, {"workflowId": "{wf}"},
                                    {"workflowId": "{wf}", "status": "scheduled", "page": "2", "limit": "2"}])
def test_list_is_one_query_per_shard_and_one_counter_read(counted, params):
    client, headers, counter, workflow_id, _ = counted
    params = {k: v.replace("{wf}", workflow_id) for k, v in params.items()}
    counter.reset()
    body = client.get(RUNS, params=params, headers=headers).json()
    assert body["pagination"]["total"] == 3
    # Each write-shard of the list is one Query (read in parallel); the totals one BatchGetItem.
    # A tenant-wide total is summed from its workflows' counters: one Query more finds them.
    tenant_wide = "workflowId" not in params
    assert counter.calls == {"Query": keys.LIST_SHARDS + tenant_wide, "BatchGetItem": 1}
