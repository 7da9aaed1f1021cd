"""Renders step configs: Jinja2 in a sandbox over `inputs`, `steps.<id>.outputs` and `env`.

Every string inside a config value is a template. A string that is exactly one expression
(`"{{ inputs.count + 1 }}"`, surrounding whitespace allowed) yields the expression's native
value (a number, an object, a list…); any other string renders to text. Dict keys are kept as
written. Any template problem — an undefined variable, access to Python internals, a syntax
error, an exception while evaluating — becomes a non-retryable `StepError` saying where it
happened (`config.url: 'dict object' has no attribute 'missing'`).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from workflow_runs_step_runner.steps.base import StepContext, StepError

# Guards against templates that would eat the Lambda's CPU or memory: `{{ 9 ** 9 ** 9 }}`,
# `{{ 'x' * 10 ** 9 }}`. The sandbox already caps `range()` at 100 000 items.
MAX_POWER_RESULT_BITS = 4096
MAX_REPEAT_LENGTH = 1_000_000

_MARKERS = ("{{", "{%", "{#")
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{-?(?P<expr>.*?)-?\}\}\s*$", re.DOTALL)


class _StepSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"**", "*"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if (isinstance(left, int) and isinstance(right, int) and right > 0
                    and max(abs(left), 2).bit_length() * right > MAX_POWER_RESULT_BITS):
                raise SecurityError("the result of '**' would be too large")
            return operator.pow(left, right)
        if operator_name == "*":
            for seq, times in ((left, right), (right, left)):
                if (isinstance(seq, (str, list, tuple)) and isinstance(times, int)
                        and len(seq) * times > MAX_REPEAT_LENGTH):
                    raise SecurityError("the result of '*' would be too large")
            return operator.mul(left, right)
        return super().call_binop(context, operator_name, left, right)


@lru_cache(maxsize=1)
def _environment() -> _StepSandbox:
    # autoescape off: outputs are data (JSON, URLs, prompts), not HTML.
    env = _StepSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    # Only pure helpers stay; `lipsum` is noise in a data pipeline.
    env.globals.pop("lipsum", None)
    return env


@lru_cache(maxsize=512)
def _compile(source: str) -> tuple[str, Any]:
    """('native', expression) for a lone `{{ … }}`, else ('text', template). Cached: step
    configs repeat across runs and compiling costs far more than rendering."""
    env = _environment()
    tree = env.parse(source)
    match = _SINGLE_EXPRESSION.match(source)
    if match and _is_single_expression(tree):
        return "native", env.compile_expression(match.group("expr"), undefined_to_none=False)
    return "text", env.from_string(tree)


def _is_single_expression(tree: nodes.Template) -> bool:
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return False
    parts = [n for n in tree.body[0].nodes if not (isinstance(n, nodes.TemplateData) and not n.data.strip())]
    return len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData)


def variables(ctx: StepContext) -> dict[str, Any]:
    return {"inputs": ctx.inputs, "steps": ctx.steps, "env": ctx.env}


def render(value: Any, ctx: StepContext, *, path: str = "config") -> Any:
    """Render every string in `value` (recursively through dicts and lists)."""
    return _render(value, variables(ctx), path)


def _render(value: Any, variables: dict[str, Any], path: str) -> Any:
    if isinstance(value, str):
        return render_string(value, variables, path=path)
    if isinstance(value, Mapping):
        return {key: _render(item, variables, f"{path}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_render(item, variables, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def render_string(source: str, variables: dict[str, Any], *, path: str = "template") -> Any:
    if not any(marker in source for marker in _MARKERS):
        return source
    try:
        kind, compiled = _compile(source)
        if kind == "native":
            return _plain(compiled(**variables))
        return compiled.render(**variables)
    except UndefinedError as exc:
        raise StepError(f"{path}: undefined template variable: {exc.message}") from None
    except SecurityError as exc:
        raise StepError(f"{path}: refused by the template sandbox: {exc.message}") from None
    except TemplateSyntaxError as exc:
        raise StepError(f"{path}: template syntax error on line {exc.lineno}: {exc.message}") from None
    except TemplateError as exc:
        raise StepError(f"{path}: template error: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - any evaluation error (1/0, bad types) is the template's fault
        raise StepError(f"{path}: template evaluation failed: {type(exc).__name__}: {exc}") from None


def _plain(value: Any) -> Any:
    """A native result as JSON-ready data; an undefined anywhere inside fails loudly."""
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, range)):
        return [_plain(v) for v in value]
    # Jinja helpers (cycler, namespace, bound methods) have no JSON form: use their text.
    return str(value)
