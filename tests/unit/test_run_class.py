"""The run class: Express for runs bound to end well inside five minutes, Standard otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_runs import run_class
from workflow_runs.models import WorkflowDefinition
from workflow_runs.settings import Settings

ASL = Path(__file__).resolve().parents[2] / "infra" / "state_machine.asl.json"


def steps(*specs: dict) -> list:
    return WorkflowDefinition.model_validate({"name": "W", "steps": list(specs)}).steps


def settings(**values: str) -> Settings:
    return Settings.from_env({"RUNS_TABLE": "runs", "EVENTS_TABLE": "events", **values})


TRANSFORM = {"id": "t", "type": "transform", "config": {"output": "x"}}


def test_a_short_transform_workflow_goes_express_by_default():
    three = steps(*({**TRANSFORM, "id": f"t{i}"} for i in range(3)))
    assert run_class.bound_seconds(three, settings()) == 15
    assert run_class.choose(three, settings()) == "express"


@pytest.mark.parametrize("spec", [
    {"id": "w", "type": "wait", "config": {"seconds": 241}},
    {"id": "l", "type": "llm", "config": {"prompt": "hi", "timeoutSeconds": 120}, "retry": {"maxAttempts": 2}},
    {"id": "h", "type": "http", "config": {"url": "https://example.com", "timeoutSeconds": 60},
     "retry": {"maxAttempts": 4}},  # 4 × 65 s + 2 + 4 + 8 s of back-off
], ids=["long wait", "llm retried", "http retried"])
def test_a_run_that_may_outlast_the_budget_goes_standard(spec: dict):
    assert run_class.bound_seconds(steps(spec), settings()) > run_class.EXPRESS_BUDGET_SECONDS
    assert run_class.choose(steps(spec), settings()) == "standard"


def test_an_llm_workflow_with_the_default_timeout_goes_express():
    # transform → llm → transform: 5 s + (60 s model budget + 5 s) + 5 s
    ai = steps(TRANSFORM | {"id": "t1"}, {"id": "l", "type": "llm", "config": {"prompt": "hi"}}, TRANSFORM | {"id": "t2"})
    assert run_class.bound_seconds(ai, settings()) == 75
    assert run_class.choose(ai, settings()) == "express"


def test_the_bound_counts_attempts_and_the_back_off_between_them():
    http = {"id": "h", "type": "http", "config": {"url": "https://example.com"}, "retry": {"maxAttempts": 3}}
    # (10 s timeout + 5 s) × 3 attempts + 2 s + 4 s of back-off
    assert run_class.bound_seconds(steps(http), settings()) == 15 * 3 + 2 + 4


@pytest.mark.parametrize("mode", ["standard", "express"])
def test_the_setting_forces_a_class(mode: str):
    assert run_class.choose(steps({"id": "l", "type": "llm", "config": {"prompt": "hi"}}, TRANSFORM | {"id": "t2"}),
                            settings(ORCHESTRATION=mode)) == mode
    assert run_class.choose(steps(TRANSFORM), settings(ORCHESTRATION=mode)) == mode


def test_an_unknown_setting_fails_loudly():
    with pytest.raises(ValueError):
        settings(ORCHESTRATION="fast")
