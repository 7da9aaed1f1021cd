"""Templating: sandboxed Jinja2 over inputs, steps.<id>.outputs and env."""

from __future__ import annotations

import pytest
from workflow_runs_step_runner.steps.base import StepError
from workflow_runs_step_runner.steps.templating import render


@pytest.fixture
def ctx(make_ctx):
    return make_ctx(
        "transform", {"output": "x"},
        inputs={"topic": "tides", "count": 3, "tags": ["a", "b"], "numeric_text": "123"},
        steps={"fetch": {"outputs": {"statusCode": 200, "body": {"title": "Moon"}}}},
        env={"TOKEN": "s3cret"},
    )


def test_lone_expression_yields_native_values(ctx):
    assert render("{{ inputs.count + 1 }}", ctx) == 4
    assert render("  {{ steps.fetch.outputs.body }} ", ctx) == {"title": "Moon"}
    assert render("{{ inputs.tags }}", ctx) == ["a", "b"]
    assert render("{{ inputs.count > 2 }}", ctx) is True


def test_string_that_looks_like_a_number_stays_a_string(ctx):
    assert render("{{ inputs.numeric_text }}", ctx) == "123"


def test_mixed_text_and_several_expressions_render_to_text(ctx):
    assert render("About {{ inputs.topic }}: {{ inputs.count }}", ctx) == "About tides: 3"
    assert render("{{ inputs.count }}{{ inputs.count }}", ctx) == "33"
    assert render("{% if inputs.count > 1 %}many{% endif %}", ctx) == "many"


def test_renders_recursively_and_keeps_keys_and_non_strings(ctx):
    value = {"a": ["{{ inputs.topic }}", 7, None], "{{ key }}": {"b": "{{ env.TOKEN }}"}}
    assert render(value, ctx) == {"a": ["tides", 7, None], "{{ key }}": {"b": "s3cret"}}


def test_string_without_template_markers_is_returned_as_is(ctx):
    assert render("plain } text {", ctx) == "plain } text {"


def test_earlier_step_outputs_are_reachable(ctx):
    assert render("{{ steps.fetch.outputs.body.title | upper }}", ctx) == "MOON"


@pytest.mark.parametrize("template, named", [
    ("{{ inputs.missing }}", "missing"),
    ("Hello {{ nope }}", "nope"),
    ("{{ steps.other.outputs }}", "other"),
    ("{{ {'a': inputs.absent} }}", "absent"),
])
def test_undefined_variable_is_a_step_error_naming_it(ctx, template, named):
    with pytest.raises(StepError) as caught:
        render({"url": template}, ctx)
    assert named in caught.value.message
    assert caught.value.message.startswith("config.url: undefined template variable")
    assert caught.value.retryable is False


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "x {{ inputs.__class__ }} y",
    "{{ (inputs.topic).format.__globals__ }}",
    "{{ dict.__base__.__subclasses__() }}",
])
def test_sandbox_refuses_python_internals(ctx, template):
    with pytest.raises(StepError) as caught:
        render(template, ctx)
    assert "refused by the template sandbox" in caught.value.message
    assert caught.value.retryable is False


def test_sandbox_escape_error_says_why(ctx):
    with pytest.raises(StepError, match=r"refused by the template sandbox: access to attribute '__class__'"):
        render("{{ ''.__class__.__mro__ }}", ctx)


@pytest.mark.parametrize("template", ["{{ 7 ** 1000000 }}", "{{ 'x' * 10 ** 9 }}", "{{ [1] * 10 ** 9 }}"])
def test_resource_exhausting_expressions_are_refused(ctx, template):
    with pytest.raises(StepError, match="too large"):
        render(template, ctx)


def test_ordinary_arithmetic_still_works(ctx):
    assert render("{{ 2 ** 10 }}", ctx) == 1024
    assert render("{{ 'ab' * 3 }}", ctx) == "ababab"
    assert render("{{ inputs.count * 2 }}", ctx) == 6


def test_syntax_error_is_a_step_error_with_its_line(ctx):
    with pytest.raises(StepError, match=r"config: template syntax error on line 1"):
        render("{{ inputs.topic ", ctx)


def test_evaluation_error_is_a_step_error(ctx):
    with pytest.raises(StepError, match="ZeroDivisionError"):
        render("{{ 1 / 0 }}", ctx)


def test_autoescape_is_off(ctx):
    assert render("{{ '<b>&' }}", ctx) == "<b>&"
    assert render("x {{ '<b>&' }}", ctx) == "x <b>&"
