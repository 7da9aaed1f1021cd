"""A new step type is one module and one line in `workflow_runs.models.STEP_KINDS`: this
test adds one (`shout`, defined here, registered only for the test) and runs it through a
workflow's PUT validation and the step runner, with no other edit."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from workflow_runs import models
from workflow_runs.secrets import get_sealer
from workflow_runs_step_runner.runner import run_step
from workflow_runs_step_runner.steps import registry
from workflow_runs_step_runner.steps.base import StepContext, StepOutcome

from tests.api.conftest import Api


class ShoutStep:
    """The test-only step type: its `config.text`, upper-cased."""

    name = "shout"

    def run(self, ctx: StepContext) -> StepOutcome:
        return StepOutcome(outputs={"text": str(ctx.step.config["text"]).upper()})


def _shout_rules(config: dict[str, Any]) -> list[str]:
    return [] if isinstance(config.get("text"), str) else ["config.text must be a string"]


@pytest.fixture
def shout(monkeypatch: pytest.MonkeyPatch) -> None:
    # The one line a new type takes:
    monkeypatch.setitem(models.STEP_KINDS, "shout", models.StepKind(f"{__name__}:ShoutStep", _shout_rules))
    registry.get.cache_clear()
    yield
    registry.get.cache_clear()


def workflow(config: dict[str, Any]) -> dict[str, Any]:
    return {"name": "Shouting", "steps": [{"id": "loud", "type": "shout", "config": config}]}


def test_a_registered_step_type_is_validated_on_put_and_run_by_the_step_runner(api: Api, shout: None):
    # When a workflow with the new type is PUT with a config its rules refuse, Then 400 says why
    refused = api.client.put(f"/api/v1/workflows/{uuid.uuid4()}", json=workflow({"text": 3}), headers=api.headers())
    assert refused.status_code == 400 and "config.text must be a string" in refused.text
    # And one its rules accept is stored
    workflow_id = str(uuid.uuid4())
    stored = api.client.put(f"/api/v1/workflows/{workflow_id}", json=workflow({"text": "tides"}),
                            headers=api.headers())
    assert stored.status_code in (200, 201), stored.text

    # When a run of it is executed and the state machine asks for its step
    started = api.client.post("/api/v1/workflow-runs/execute", json={"workflowId": workflow_id, "inputs": {}},
                              headers=api.headers())
    assert started.status_code in (200, 202), started.text
    run_id = started.json()["workflowRun"]["id"]
    reply = run_step({"runId": run_id, "attempt": 0}, settings=api.service.settings, store=api.store,
                     sealer=get_sealer(api.service.settings))

    # Then the step runner ran it: the run completed with the step's outputs
    assert reply["next"] == "done"
    run = api.store.get_run("t1", run_id)
    assert run.status.value == "completed"
    assert [(a.step_id, a.outputs) for a in run.activity_runs] == [("loud", {"text": "TIDES"})]


def test_an_unregistered_step_type_is_refused_on_put(api: Api):
    refused = api.client.put(f"/api/v1/workflows/{uuid.uuid4()}", json=workflow({"text": "x"}), headers=api.headers())
    assert refused.status_code == 400 and "type" in refused.text
