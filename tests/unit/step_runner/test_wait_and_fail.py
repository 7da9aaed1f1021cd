"""wait asks the orchestrator to wait; fail fails the step for good; the registry knows all five."""

from __future__ import annotations

import pytest
from workflow_runs.models import STEP_TYPES
from workflow_runs_step_runner.steps import registry
from workflow_runs_step_runner.steps.base import StepError
from workflow_runs_step_runner.steps.fail import DEFAULT_MESSAGE


def test_wait_returns_its_seconds_as_wait_and_outputs(make_ctx):
    outcome = registry.get("wait").run(make_ctx("wait", {"seconds": 2}))
    assert outcome.wait_seconds == 2
    assert outcome.outputs == {"seconds": 2}


def test_wait_of_zero_seconds_is_allowed(make_ctx):
    assert registry.get("wait").run(make_ctx("wait", {"seconds": 0})).wait_seconds == 0


def test_wait_refuses_seconds_that_do_not_render_to_an_integer(make_ctx):
    ctx = make_ctx("wait", {"seconds": "{{ inputs.s }}"}, inputs={"s": "soon"}, validate=False)
    with pytest.raises(StepError, match="config.seconds must be a non-negative integer"):
        registry.get("wait").run(ctx)


def test_fail_raises_its_rendered_message_without_retry(make_ctx):
    ctx = make_ctx("fail", {"message": "no data for {{ inputs.topic }}"}, inputs={"topic": "tides"})
    with pytest.raises(StepError) as caught:
        registry.get("fail").run(ctx)
    assert caught.value.message == "no data for tides"
    assert caught.value.retryable is False


@pytest.mark.parametrize("config", [{}, {"message": ""}])
def test_fail_without_message_uses_the_default(make_ctx, config):
    with pytest.raises(StepError) as caught:
        registry.get("fail").run(make_ctx("fail", config))
    assert caught.value.message == DEFAULT_MESSAGE == "failed by a fail step"


def test_registry_serves_every_step_type_the_model_accepts():
    assert {registry.get(name).name for name in STEP_TYPES} == set(STEP_TYPES)
    assert set(registry.names()) == set(STEP_TYPES)


def test_registry_returns_the_same_instance_each_time():
    assert registry.get("transform") is registry.get("transform")


def test_unknown_step_type_is_a_non_retryable_step_error():
    with pytest.raises(StepError) as caught:
        registry.get("teleport")
    assert caught.value.retryable is False and "teleport" in caught.value.message
