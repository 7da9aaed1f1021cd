"""Cross-tenant matrix: another tenant's runs and workflows are 404 (never 403) on every
endpoint, and lists, search, counts and cancels never cross tenants — also when two tenants
use the same workflow name and the same workflow id."""

from __future__ import annotations

import pytest
from workflow_runs.service import ExecuteRequest

from tests.api.conftest import WORKFLOW, Api

RUNS = "/api/v1/workflow-runs"


@pytest.fixture
def owned(api: Api):
    workflow_id = api.put_workflow(tenant="owner")
    run_id = api.service.start_run("owner", ExecuteRequest(workflow_id=workflow_id, inputs={"topic": "x"})).id
    # The intruder has a workflow of the same name, and its own run of it.
    own_workflow = api.put_workflow(tenant="intruder")
    own_run = api.service.start_run("intruder", ExecuteRequest(workflow_id=own_workflow, inputs={"topic": "y"})).id
    return workflow_id, run_id, own_run


def test_get_of_another_tenants_run_is_404(api: Api, owned):
    _, run_id, _ = owned
    response = api.client.get(f"{RUNS}/{run_id}", headers=api.headers("intruder"))
    assert response.status_code == 404 and response.json()["error"] == "NotFound"


def test_dashboard_of_another_tenants_workflow_is_404(api: Api, owned):
    workflow_id, _, _ = owned
    assert api.client.get(f"{RUNS}/dashboard/{workflow_id}", headers=api.headers("intruder")).status_code == 404


def test_execute_of_another_tenants_workflow_is_404(api: Api, owned):
    workflow_id, _, _ = owned
    response = api.client.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}},
                               headers=api.headers("intruder"))
    assert response.status_code == 404


def test_get_of_another_tenants_workflow_is_404(api: Api, owned):
    workflow_id, _, _ = owned
    assert api.client.get(f"/api/v1/workflows/{workflow_id}", headers=api.headers("intruder")).status_code == 404


@pytest.mark.parametrize("params", [{}, {"search": "summ"}, {"status": "scheduled"}, {"workflowId": "{wf}"}])
def test_lists_and_search_show_only_own_runs(api: Api, owned, params):
    workflow_id, run_id, own_run = owned
    params = {k: v.replace("{wf}", workflow_id) for k, v in params.items()}
    body = api.client.get(RUNS, params=params, headers=api.headers("intruder")).json()
    ids = [r["id"] for r in body["data"]]
    assert run_id not in ids
    assert body["pagination"]["total"] == len(ids)
    if "workflowId" not in params:
        assert ids == [own_run]


def test_workflow_list_shows_only_own_workflows(api: Api, owned):
    workflow_id, _, _ = owned
    listed = api.client.get("/api/v1/workflows", headers=api.headers("intruder")).json()["data"]
    assert workflow_id not in [w["id"] for w in listed]


def test_cancel_of_another_tenants_run_is_not_found_and_changes_nothing(api: Api, owned):
    _, run_id, _ = owned
    body = api.client.post(f"{RUNS}/cancel", json={"runIds": [run_id]}, headers=api.headers("intruder")).json()
    assert body["results"] == [{"runId": run_id, "status": "not_found", "message": "run not found"}]
    assert api.service.get_run("owner", run_id).status.value == "scheduled"
    assert api.orchestrator.stopped == []


def test_cancel_by_another_tenants_workflow_is_404(api: Api, owned):
    workflow_id, run_id, _ = owned
    response = api.client.post(f"{RUNS}/cancel", json={"workflowId": workflow_id}, headers=api.headers("intruder"))
    assert response.status_code == 404
    assert api.service.get_run("owner", run_id).status.value == "scheduled"


def test_same_workflow_id_in_two_tenants_stays_two_workflows(api: Api, owned):
    workflow_id, _, _ = owned
    put = api.client.put(f"/api/v1/workflows/{workflow_id}", json={**WORKFLOW, "name": "Mine"},
                         headers=api.headers("intruder"))
    assert put.status_code == 200 and put.json()["workflow"]["version"] == 1
    assert api.service.get_workflow("owner", workflow_id).name == "Summarise"
    owner_counts = api.client.get(f"{RUNS}/dashboard/{workflow_id}", headers=api.headers("owner")).json()
    intruder_counts = api.client.get(f"{RUNS}/dashboard/{workflow_id}", headers=api.headers("intruder")).json()
    assert (owner_counts["total"], intruder_counts["total"]) == (1, 0)
