"""Threat: template work without bounds. One filter call or one loop in a step config built
100 MB strings or ran for minutes, inside a step or, on one machine, a dev-server worker."""

from __future__ import annotations

import time

import pytest
from workflow_runs.models import Status
from workflow_runs_step_runner.steps.base import StepError
from workflow_runs_step_runner.steps.templating import MAX_RENDER_SECONDS, MAX_VALUE_CHARS, MAX_WIDTH, render

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
def test_template_work_over_a_bound_fails_the_step_quickly_and_says_which_bound(make_ctx, name: str):
    template, says = ATTACKS[name]
    started = time.monotonic()
    with pytest.raises(StepError) as caught:
        render({"output": template}, make_ctx("transform", {"output": "x"}))
    assert time.monotonic() - started < MAX_RENDER_SECONDS + 2
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
