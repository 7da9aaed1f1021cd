"""The `approval` step type: its config rules (clear 400 lines), its run class (always
Standard), and what the step itself does (renders the prompt, asks to be parked)."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError
from workflow_runs import run_class
from workflow_runs.approvals import DecisionRequest, open_token, seal_token
from workflow_runs.models import WorkflowDefinition
from workflow_runs.secrets import LocalSealer, UnsealError
from workflow_runs.settings import Settings
from workflow_runs_step_runner.steps import registry
from workflow_runs_step_runner.steps.base import StepContext, StepError

TRANSFORM = {"id": "t", "type": "transform", "config": {"output": "x"}}


def workflow(config: dict) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate({"name": "W", "steps": [
        TRANSFORM, {"id": "review", "type": "approval", "config": config}]})


def settings(**values: str) -> Settings:
    return Settings.from_env({"RUNS_TABLE": "runs", "EVENTS_TABLE": "events", **values})


def test_a_prompt_alone_is_valid_and_waits_a_day_by_default():
    from workflow_runs.models import approval_timeout_seconds

    step = workflow({"prompt": "ok?"}).steps[1]
    assert approval_timeout_seconds(step) == 86_400
    assert approval_timeout_seconds(workflow({"prompt": "ok?", "timeoutSeconds": 31_536_000}).steps[1]) == 31_536_000


@pytest.mark.parametrize("config, problem", [
    ({}, "config.prompt must be a non-empty string"),
    ({"prompt": ""}, "config.prompt must be a non-empty string"),
    ({"prompt": 3}, "config.prompt must be a non-empty string"),
    ({"prompt": "ok?", "timeoutSeconds": 0}, "config.timeoutSeconds must be an integer from 1 to 31536000"),
    ({"prompt": "ok?", "timeoutSeconds": 31_536_001}, "config.timeoutSeconds must be an integer from 1 to 31536000"),
    ({"prompt": "ok?", "timeoutSeconds": 1.5}, "config.timeoutSeconds must be an integer"),
    ({"prompt": "ok?", "timeoutSeconds": True}, "config.timeoutSeconds must be an integer"),
    ({"prompt": "ok?", "approver": ["ana"]}, "unknown config keys: approver"),
    ({"prompt": "ok?", "approvers": []}, "config.approvers must be a list of 1 to 100 subjects"),
    ({"prompt": "ok?", "approvers": "ana"}, "config.approvers must be a list"),
    ({"prompt": "ok?", "approvers": ["ana", ""]}, "config.approvers must be a list"),
    ({"prompt": "ok?", "approvers": ["ana", 7]}, "config.approvers must be a list"),
    ({"prompt": "ok?", "approvers": [" ana"]}, "no surrounding spaces"),
    ({"prompt": "ok?", "approvers": ["x" * 257]}, "at most 256 characters"),
    ({"prompt": "ok?", "approvers": [f"u{i}" for i in range(101)]}, "1 to 100 subjects"),
    ({"prompt": "ok?", "reuseOnRetry": "yes"}, "config.reuseOnRetry must be true or false"),
    ({"prompt": "ok?", "reuseOnRetry": 1}, "config.reuseOnRetry must be true or false"),
])
def test_a_bad_config_says_what_to_fix(config: dict, problem: str):
    with pytest.raises(ValidationError) as caught:
        workflow(config)
    assert problem in str(caught.value) and "step 'review' (approval)" in str(caught.value)


def test_approvers_and_reuse_on_retry_are_valid_config():
    from workflow_runs.models import approval_approvers, approval_reused_on_retry

    step = workflow({"prompt": "ok?", "approvers": ["ana", "internal"], "reuseOnRetry": True}).steps[1]
    assert approval_approvers(step) == {"ana", "internal"} and approval_reused_on_retry(step) is True
    plain = workflow({"prompt": "ok?"}).steps[1]
    assert approval_approvers(plain) is None and approval_reused_on_retry(plain) is False


@pytest.mark.parametrize("orchestration", ["auto", "express", "standard"])
def test_a_workflow_with_an_approval_always_runs_standard(orchestration: str):
    steps = workflow({"prompt": "ok?", "timeoutSeconds": 1}).steps
    assert run_class.choose(steps, settings(ORCHESTRATION=orchestration)) == "standard"
    assert run_class.choose(steps[:1], settings(ORCHESTRATION=orchestration)) == (
        "standard" if orchestration == "standard" else "express")


def context(config: dict, inputs: dict | None = None) -> StepContext:
    step = workflow(config).steps[1]
    return StepContext(run_id=str(uuid.uuid4()), activity_run_id=str(uuid.uuid4()), step=step, attempt=1,
                       inputs=inputs or {}, steps={"t": {"outputs": {"value": "x"}}}, env={}, settings=settings())


def test_the_step_renders_its_prompt_and_asks_to_wait_its_timeout():
    outcome = registry.get("approval").run(context({"prompt": "Ship {{ inputs.v }} after {{ steps.t.outputs.value }}?",
                                                    "timeoutSeconds": 60}, {"v": "2.0"}))
    assert outcome.outputs == {"prompt": "Ship 2.0 after x?"}
    assert outcome.approval_timeout_seconds == 60 and outcome.wait_seconds is None


def test_a_prompt_naming_nothing_fails_the_step():
    with pytest.raises(StepError, match="config.prompt: undefined template variable"):
        registry.get("approval").run(context({"prompt": "{{ steps.nope.outputs.x }}"}))


def test_a_sealed_token_opens_only_for_its_run_and_step():
    sealer = LocalSealer(b"k" * 32)
    run_id = str(uuid.uuid4())
    blob = seal_token(sealer, run_id, "review", "the-token")
    assert "the-token" not in blob
    assert open_token(sealer, blob, run_id, "review") == "the-token"
    for other_run, other_step in ((str(uuid.uuid4()), "review"), (run_id, "other")):
        with pytest.raises(UnsealError):
            open_token(sealer, blob, other_run, other_step)


@pytest.mark.parametrize("body", [
    {"comment": "x" * 2001},
    {"outputs": {"decidedAt": "now"}},
    {"outputs": {"big": "x" * 16_400}},
    {"unknown": 1},
])
def test_a_decision_body_is_checked(body: dict):
    with pytest.raises(ValidationError):
        DecisionRequest.model_validate(body)
    assert DecisionRequest.model_validate({"comment": "ok", "outputs": {"n": 1}}).outputs == {"n": 1}
