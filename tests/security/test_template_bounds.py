"""Threat: template work without bounds. One filter call or one loop in a step config built
100 MB strings or ran for minutes, inside a step or, on one machine, a dev-server worker."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workflow_runs.models import Status
from workflow_runs_step_runner.steps.base import StepError
from workflow_runs_step_runner.steps.templating import MAX_RENDER_SECONDS, MAX_VALUE_CHARS, MAX_WIDTH, render

from tests.reliability.support import soak
from tests.unit.step_runner.test_runner import Bench

HUGE = 100_000_000
BIG = "{% set big = 'x' * 100000 %}"

ATTACKS = {
    # widths
    "center filter": (f"{{{{ 'x'|center({HUGE}) }}}}", "center width"),
    "format filter": (f"{{{{ '%{HUGE}s'|format('x') }}}}", "width or precision"),
    "format precision": (f"{{{{ '%.{HUGE}f'|format(1.5) }}}}", "width or precision"),
    "percent operator": (f"{{{{ '%{HUGE}s' % 'x' }}}}", "width or precision"),
    "str.format": (f"{{{{ '{{:>{HUGE}}}'.format('x') }}}}", "width or precision"),
    "str.format nested width": ("{{ '{:>{}}'.format('x', 100000000) }}", "nested fields"),
    "ljust method": (f"{{{{ 'x'.ljust({HUGE}) }}}}", "ljust width"),
    "zfill method": (f"{{{{ '1'.zfill({HUGE}) }}}}", "zfill width"),
    "indent filter": (f"{{{{ 'a'|indent({HUGE}) }}}}", "indent width"),
    "indent of many lines": (BIG + "{{ (big|replace('x', 'x\\n'))|indent(9000) }}", "limit"),
    "tojson indent": (f"{{{{ [1, [2]]|tojson(indent={HUGE}) }}}}", "tojson indent"),
    "wordwrap string": (BIG + "{{ big|wordwrap(1, wrapstring='-' * 9000) }}", "limit"),
    # sizes
    "replace growth": ("{{ ('x' * 1000000)|replace('x', 'xx') }}", "limit"),
    "join separator": ("{{ range(100000)|join('x' * 100000) }}", "limit"),
    "str.join separator": ("{{ ('x' * 100000).join(range(1000)|map('string')) }}", "limit"),
    "concat doubling": (("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                         "{% endfor %}{{ ns.s|length }}"), "'~'"),
    "plus doubling": (("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
                       "{% endfor %}{{ ns.s|length }}"), "'+'"),
    "list doubling": ("{% set l = [1] %}{% for i in range(40) %}{% set _ = l.extend(l) %}{% endfor %}{{ l|length }}",
                      "grown by extend"),
    "output in a loop": (BIG + "{% for i in range(100000) %}{{ big }}{% endfor %}", "rendered text"),
    "block set in a loop": (BIG + ("{% set s %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endset %}"
                                   "{{ s|length }}"), "rendered text"),
    "macro doubling": (("{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}"
                        "{% endmacro %}{{ d('x', 40) }}"), "'~'"),
    # time
    "nested loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                     "operations"),
    "nested loops over a list": (("{% set l = range(5000)|list %}{% for a in l %}{% for b in l %}{% endfor %}"
                                  "{% endfor %}"), "operations"),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_template_work_over_a_bound_fails_the_step_quickly_and_says_which_bound(make_ctx, monkeypatch, name: str):
    from workflow_runs_step_runner.steps import templating

    # The bound named must answer, not the deadline of a busy machine (tested on its own below).
    monkeypatch.setattr(templating, "MAX_RENDER_SECONDS", 120.0)
    template, says = ATTACKS[name]
    cpu = time.thread_time()
    with pytest.raises(StepError) as caught:
        render({"output": template}, make_ctx("transform", {"output": "x"}))
    assert time.thread_time() - cpu < MAX_RENDER_SECONDS + 2  # CPU time: a busy machine adds none
    assert caught.value.retryable is False
    assert "config.output: refused by the template sandbox" in caught.value.message
    assert says in caught.value.message


def test_ordinary_templates_stay_within_the_bounds(make_ctx):
    ctx = make_ctx("transform", {"output": "x"}, inputs={"items": list(range(1000))})
    assert render("{{ 'ab'|center(6) }}|{{ '%5.2f'|format(3.14159) }}|{{ '{:>4}'.format(7) }}", ctx) == \
        "  ab  | 3.14|   7"
    assert render("{{ 'a\nb'|indent(2, first=True) }}", ctx) == "  a\n  b"
    assert render("{{ {'a': [1]}|tojson(indent=2) }}", ctx) == '{\n  "a": [\n    1\n  ]\n}'
    assert render("{% for i in inputs['items'] %}{{ i }},{% endfor %}", ctx).count(",") == 1000
    assert render("{{ inputs['items']|join(', ') }}", ctx).startswith("0, 1, 2")
    assert render(f"{{{{ 'x' * {MAX_VALUE_CHARS} }}}}", ctx) == "x" * MAX_VALUE_CHARS
    assert render(f"{{{{ 'x'|center({MAX_WIDTH}) }}}}", ctx).strip() == "x"


def test_a_step_over_a_bound_fails_the_run_with_the_message(bench: Bench):
    run_id = bench.new_run([{"id": "wide", "type": "transform", "config": {"output": f"{{{{ 'x'|center({HUGE}) }}}}"}}])
    assert bench.invoke(run_id)["next"] == "failed"
    run = bench.run(run_id)
    assert run.status is Status.FAILED
    assert run.error.message == (f"config.output: refused by the template sandbox: center width {HUGE} "
                                 f"is over {MAX_WIDTH}")


def test_rendering_also_stops_at_its_deadline(make_ctx, monkeypatch):
    from workflow_runs_step_runner.steps import templating

    monkeypatch.setattr(templating, "MAX_RENDER_SECONDS", 0.0)
    with pytest.raises(StepError, match="rendering took longer than 0 s"):
        render("{% for i in range(100000) %}{% endfor %}", make_ctx("transform", {"output": "x"}))


# --- issue 28: limits checked before the value is built, the deadline during evaluation --------
# Each input the red team reported. They were refused only after Python had built the value
# (or not at all): 9.9 s and 300 MB, a 524-million-bit integer, 45 s and 1.56 GB.

SQUARINGS = "{% set a = 2 ** 2000 %}" + "{% set a = a * a %}" * 18 + "done"
S = "{% set s = 'x' * 100000 %}"  # a string is sized at once, so these inputs test the bound, not the clock
ISSUE_28 = {
    "nested list repetition": ("x{{ [[0] * 999999] * 100 }}", "the result of '*'"),
    "squaring a 2000-bit integer": (SQUARINGS, "the result of '*' would be too large (an integer"),
    "sum of lists over the limit": (S + "{% set l = [s] %}{{ [l, l, l, l, l, l, l, l, l, l, l]|sum(start=[])|length }}",
                                    "the result of 'sum'"),
    "printing a shared list": (S + "{{ [s, s, s, s, s, s, s, s, s, s, s] }}", "the printed value"),
    "joining printed lists": (S + "{{ [[s, s, s], [s, s, s], [s, s, s], [s, s, s]]|join }}", "the joined text"),
    "string of a shared list": (S + "{{ [s, s, s, s, s, s, s, s, s, s, s]|string }}", "the input of 'string'"),
    "concatenating a shared list": (S + "{{ 'x' ~ [s, s, s, s, s, s, s, s, s, s, s] }}", "'~'"),
    "formatting a shared list": (S + "{{ '%s%s' % ([s] * 6, [s] * 6) }}", "the formatted text"),
    "str.format repeating a field": ("{{ ('{0}' * 100).format('x' * 100000) }}", "the formatted text"),
    "batch padding": ("{{ [1]|batch(1000000000, 0)|list|length }}", "batch size"),
    "held in a list": ("{% set l = [] %}{% for i in range(40) %}{{ l.append('x' * 999999) }}{% endfor %}",
                       "built more than"),
}


def _peak_render(template: str, make_ctx: Any) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    try:
        render({"output": template}, make_ctx("transform", {"output": "x"}))
    except StepError as exc:
        return exc, tracemalloc.get_traced_memory()[1]
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return None, peak


@pytest.mark.parametrize("name", list(ISSUE_28))
def test_issue_28_inputs_are_refused_before_the_value_is_built(make_ctx, monkeypatch, name: str):
    from workflow_runs_step_runner.steps import templating

    monkeypatch.setattr(templating, "MAX_RENDER_SECONDS", 120.0)  # the size bounds answer, not a busy clock
    template, says = ISSUE_28[name]
    caught, peak = _peak_render(template, make_ctx)
    assert isinstance(caught, StepError), f"rendered without refusal (peak {peak >> 20} MiB)"
    assert caught.retryable is False and "refused by the template sandbox" in caught.message
    assert says in caught.message
    # Memory, not time (a busy machine): the refused value was never built. The largest a
    # template may hold is one value of MAX_VALUE_CHARS (8 MB as a list of a million items).
    assert peak < 48 * 2**20, f"peak {peak >> 20} MiB"


def test_a_sum_of_many_small_lists_is_linear(make_ctx, monkeypatch):
    # Python's sum(lists, []) copies the total at every step: 100 000 lists of one item took
    # tens of seconds of CPU in C, where no deadline can interrupt it. CPU time of this thread,
    # not the clock: a busy machine does not add to it.
    from workflow_runs_step_runner.steps import templating

    monkeypatch.setattr(templating, "MAX_RENDER_SECONDS", 120.0)
    ctx = make_ctx("transform", {"output": "x"})
    cpu = time.thread_time()
    assert render("{{ range(100000)|batch(1)|sum(start=[])|length }}", ctx) == 100000
    assert time.thread_time() - cpu < MAX_RENDER_SECONDS
    assert render("{{ [[1, 2], [3]]|sum(start=[]) }}", ctx) == [1, 2, 3]
    assert render("{{ [1, 2, 3]|sum }}", ctx) == 6
    assert render("{{ [{'n': 2}, {'n': 3}]|sum(attribute='n', start=1) }}", ctx) == 6


def test_integer_arithmetic_within_the_bound_still_works(make_ctx):
    ctx = make_ctx("transform", {"output": "x"})
    assert render("{% set a = 2 ** 2000 %}{{ (a * a).bit_length() }}", ctx) == "4001"
    assert render("{{ (2 ** 2000 * 2 ** 2000).bit_length() }}", ctx) == 4001
    assert render("{% set a = 2 ** 2000 %}{{ (a * a + a * a - 1).bit_length() }}", ctx) == "4001"
    assert render("{{ ([[0] * 1000] * 900)|length }}", ctx) == 900


def test_the_deadline_is_checked_between_sized_steps_of_one_filter(make_ctx, monkeypatch):
    # A single filter call (sum) stops at the deadline in the middle of its work, not after it.
    from workflow_runs_step_runner.steps import templating

    monkeypatch.setattr(templating, "MAX_RENDER_SECONDS", 0.0)
    with pytest.raises(StepError, match="rendering took longer than 0 s"):
        templating.render_string("{{ x|sum(start=[]) }}", {"x": [[1]] * 10})


# --- fuzzing: compositions of the risky pieces stay under the time and memory bounds -----------

PIECES = ["[0] * 999999", "[[0] * 1000] * 1000", "'x' * 999999", "range(100000)|list", "2 ** 2000", "(2 ** 2000) * (2 ** 2000)",
          "'%s' % (range(1000)|list)", "'{0}{0}'.format('y' * 500000)", "[1, 2]", "'ab'"]
OPS = ["{a} * {n}", "{a} + {b}", "[{a}, {b}, {a}, {b}]", "{a}|join", "{a}|string", "[{a}, {b}]|sum(start=[])",
       "{a}|list", "{a}|replace('0', '00')", "({a})[::-1]", "{a} ~ {b}", "{a}|tojson", "{a}|batch(3)|list",
       "[{a}] * {n}", "{a}|pprint"]


@settings(max_examples=soak(30, 400), deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(OPS), st.sampled_from(PIECES), st.sampled_from(PIECES),
                          st.sampled_from(["2", "10", "100", "1000"])), min_size=1, max_size=3))
def test_fuzzed_templates_stay_under_the_time_and_memory_bounds(steps: list[tuple[str, str, str, str]]):
    from workflow_runs_step_runner.steps.templating import render_string

    expression = "'seed'"
    for op, a, b, n in steps:
        expression = op.format(a=f"({a})", b=f"({expression})", n=n)
    template = "x{{ " + expression + " }}"
    tracemalloc.start()
    cpu = time.thread_time()
    try:
        render_string(template, {})
    except StepError:
        pass
    finally:
        used, peak = time.thread_time() - cpu, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # CPU time of this thread (a busy machine does not add to it); tracing makes it slower.
    assert used < MAX_RENDER_SECONDS * 3, f"{used:.1f} s CPU for {template[:200]}"
    assert peak < 96 * 2**20, f"peak {peak >> 20} MiB for {template[:200]}"
