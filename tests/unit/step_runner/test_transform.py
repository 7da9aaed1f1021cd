"""transform: config.output rendered into the step's outputs."""

from __future__ import annotations

import pytest
from workflow_runs_step_runner.steps import registry
from workflow_runs_step_runner.steps.base import StepError


def run(ctx):
    return registry.get("transform").run(ctx)


def test_object_output_becomes_the_outputs(make_ctx):
    ctx = make_ctx("transform", {"output": {"title": "{{ inputs.topic | title }}", "n": "{{ inputs.n * 2 }}"}},
                   inputs={"topic": "spring tides", "n": 21})
    assert run(ctx).outputs == {"title": "Spring Tides", "n": 42}


def test_template_output_is_wrapped_in_value(make_ctx):
    ctx = make_ctx("transform", {"output": "Summary of {{ inputs.topic }}"}, inputs={"topic": "tides"})
    assert run(ctx).outputs == {"value": "Summary of tides"}


def test_lone_expression_keeps_its_native_type_inside_value(make_ctx):
    ctx = make_ctx("transform", {"output": "{{ steps.first.outputs }}"},
                   steps={"first": {"outputs": {"a": [1, 2]}}})
    assert run(ctx).outputs == {"value": {"a": [1, 2]}}


def test_literal_non_string_output_is_wrapped(make_ctx):
    assert run(make_ctx("transform", {"output": [1, "{{ 1 + 1 }}"]})).outputs == {"value": [1, 2]}


def test_outputs_do_not_ask_for_a_wait(make_ctx):
    assert run(make_ctx("transform", {"output": "x"})).wait_seconds is None


def test_undefined_variable_fails_without_retry_and_names_the_path(make_ctx):
    ctx = make_ctx("transform", {"output": {"title": "{{ inputs.nope }}"}})
    with pytest.raises(StepError) as caught:
        run(ctx)
    assert caught.value.retryable is False
    assert caught.value.message.startswith("config.output.title: undefined template variable")
    assert "nope" in caught.value.message
