"""Renders step configs: Jinja2 in a sandbox over `inputs`, `steps.<id>.outputs` and `env`.

Every string inside a config value is a template. A string that is exactly one expression
(`"{{ inputs.count + 1 }}"`, surrounding whitespace allowed) yields the expression's native
value (a number, an object, a list…); any other string renders to text. Dict keys are kept as
written. Any template problem — an undefined variable, access to Python internals, a syntax
error, an exception while evaluating — becomes a non-retryable `StepError` saying where it
happened (`config.url: 'dict object' has no attribute 'missing'`).
"""

from __future__ import annotations

import functools
import inspect
import json
import operator
import re
import string
import sys
import time
from collections.abc import Callable, ItemsView, KeysView, Mapping, ValuesView
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.filters import make_attrgetter, pass_environment
from jinja2.runtime import markup_join
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import Namespace

from workflow_runs_step_runner.steps.base import StepContext, StepError

# Guards against templates that would eat the Lambda's CPU or memory (docs/steps.md lists
# them): `{{ 9 ** 9 ** 9 }}`, `{{ 'x' * 10 ** 9 }}`, `{{ 'x'|center(10 ** 8) }}`, loops in
# loops, `{{ [[0] * 999999] * 100 }}`, squaring a 2000-bit integer, `|sum(start=[])`. Every
# check runs on the operands, before Python builds the value. The sandbox itself caps
# `range()` at 100 000 items.
MAX_POWER_RESULT_BITS = 4096
# Any integer arithmetic (`*`, `+`, `-`, `**`) would build: Python's own multiplication and
# printing of big integers is quadratic and runs where no deadline can stop it.
MAX_INT_BITS = MAX_POWER_RESULT_BITS
# Any string or list a template builds, and what a config renders to, in characters or items.
MAX_VALUE_CHARS = 1_000_000
# Width, padding, indentation and precision arguments (`center`, `format`, `indent`, …).
MAX_WIDTH = 10_000
# One config's rendering: what a template may do (template lines run plus Python calls made)
# and how long it may take, whichever ends first.
MAX_RENDER_OPERATIONS = 1_000_000
MAX_RENDER_SECONDS = 2.0
# The memory ceiling of one config's rendering: everything its operators, filters, calls and
# outputs build, added up (characters or items, freed or not), so what a render holds at
# any moment is below it too. No process limit: the dev server renders in threads.
MAX_RENDER_BUILT = 16 * MAX_VALUE_CHARS
_TEMPLATE_FILENAME = "<template>"  # what Jinja compiles a template from a string under

_MARKERS = ("{{", "{%", "{#")
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{-?(?P<expr>.*?)-?\}\}\s*$", re.DOTALL)
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _refuse_large(value: Any, what: str) -> Any:
    if isinstance(value, (str, list, tuple, dict, set)) and len(value) > MAX_VALUE_CHARS:
        raise SecurityError(f"{what} would be {len(value)} long; the limit is {MAX_VALUE_CHARS}")
    return value


def _refuse_size(size: int, what: str) -> None:
    if size > MAX_VALUE_CHARS:
        raise SecurityError(f"{what} would be about {size} long; the limit is {MAX_VALUE_CHARS}")


def _size(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """About how large `value` is once printed or copied — characters of its strings plus one
    per item, container and scalar (a big integer counts a unit per 32 bits) — counted
    through nested and shared containers, iteratively, stopping as soon as it passes `limit`.
    `[x] * 100` of a 1 000 000-item `x` is 100 000 100: what its text would need."""
    # A container counts one per item (so a scalar item adds nothing more); strings add their
    # characters, integers a unit per 32 bits.
    total, stack, steps = 0 if isinstance(value, (str, bytes)) else 1, [value], 0
    while stack:
        item = stack.pop()
        steps += 1
        if not steps % 4096:
            _check_deadline()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 32
        elif isinstance(item, Mapping):
            total += 2 * len(item)
            stack.extend(k for k in item if not isinstance(k, _SCALARS))
            stack.extend(v for v in item.values() if not isinstance(v, _SCALARS))
        elif isinstance(item, (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)):
            total += len(item)
            stack.extend(c for c in item if not isinstance(c, _SCALARS))
        elif isinstance(item, Namespace):
            stack.append(dict(item._Namespace__attrs))
        if total > limit:
            return total
    return total


# Items that add nothing beyond their own unit (small integers count by their bits only when big).
_SCALARS = (bool, float, type(None))


def _refuse_sized(value: Any, what: str) -> Any:
    """`value`, unless printing or copying it would pass the limit (checked before either)."""
    size = _size(value)
    if size > MAX_VALUE_CHARS:
        raise SecurityError(f"{what} would be over {MAX_VALUE_CHARS} long")
    return value


def _refuse_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise SecurityError(f"{what} would be too large (an integer of about {bits} bits; the limit is "
                            f"{MAX_INT_BITS})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse_width(value: Any, what: str) -> None:
    if isinstance(value, str):
        value = len(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIDTH:
        raise SecurityError(f"{what} {value} is over {MAX_WIDTH}")


def _refuse_printf_widths(text: Any) -> None:
    """Widths and precisions of `%` conversions: `'%100000000s' % x` is one huge string."""
    if not isinstance(text, str):
        return
    for match in _PRINTF_SPEC.finditer(text):
        for number in match.groups():
            if number == "*":
                raise SecurityError("'*' widths are not allowed in a format; write the width")
            _refuse_width(int(number) if number else None, "a width or precision of")


def _format_fields(text: str) -> list[tuple[Any, ...]]:
    try:
        return list(string.Formatter().parse(text))
    except ValueError:
        return []  # the formatter itself says what is wrong


def _refuse_format_widths(text: str) -> None:
    """The same for `str.format` specs (`'{:>100000000}'`)."""
    for _, _, spec, _ in _format_fields(text):
        if spec and "{" in spec:
            raise SecurityError("nested fields in a format spec are not allowed; write the width")
        for number in re.findall(r"\d+", spec or ""):
            _refuse_width(int(number), "a width or precision of")


def _joined_size(items: list[Any], separator: str) -> int:
    # Items that are not strings are printed first: `[[0] * 999999] * 9|join` is sized too.
    return (sum(len(i) if isinstance(i, str) else _size(i) for i in items)
            + len(separator) * max(len(items) - 1, 0))


def _replaced_size(text: str, old: str, new: str, count: int = -1) -> int:
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


# name -> a check of a filter's bound arguments, run before the filter.
def _check_center(a: dict) -> None:
    _refuse_width(a.get("width"), "center width")


def _check_indent(a: dict) -> None:
    width = a.get("width", 4)
    _refuse_width(width, "indent width")
    per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    text = str(a.get("s", ""))
    _refuse_size(len(text) + (text.count("\n") + 1) * per_line, "the indented text")


def _check_wordwrap(a: dict) -> None:
    text, width, wrap = str(a.get("s", "")), a.get("width", 79), a.get("wrapstring") or "\n"
    _refuse_width(wrap, "wordwrap wrapstring length")
    if isinstance(width, int) and width > 0:
        _refuse_size(len(text) + (len(text) // width + 1) * len(wrap), "the wrapped text")


def _check_replace(a: dict) -> None:
    if all(isinstance(a.get(k), str) for k in ("s", "old", "new")):
        _refuse_size(_replaced_size(a["s"], a["old"], a["new"], a.get("count") or -1), "the replaced text")


def _check_slice(a: dict) -> None:
    _refuse_width(a.get("slices"), "slice count")


def _check_tojson(a: dict) -> None:
    _refuse_width(a.get("indent"), "tojson indent")


def _check_format(a: dict) -> None:
    _refuse_printf_widths(a.get("value"))
    _refuse_printf_result(a.get("value"), a.get("args") or a.get("kwargs"))


def _check_batch(a: dict) -> None:
    # The last batch is padded to `linecount` items: `[1]|batch(10 ** 9, 0)`.
    if a.get("fill_with") is not None:
        _refuse_width(a.get("linecount"), "batch size")


_FILTER_CHECKS: dict[str, Callable[[dict], None]] = {
    "center": _check_center, "indent": _check_indent, "wordwrap": _check_wordwrap, "replace": _check_replace,
    "slice": _check_slice, "tojson": _check_tojson, "format": _check_format, "batch": _check_batch,
}
# Filters that neither print nor copy their input (nor build more than a few items from it):
# their arguments are not sized before the call.
_NON_COPYING_FILTERS = frozenset({
    "length", "count", "first", "last", "default", "d", "abs", "int", "float", "round", "random", "attr",
    "filesizeformat", "tojson", "batch", "slice", "map", "select", "reject", "selectattr", "rejectattr",
    "min", "max", "items", "list", "unique", "sort", "dictsort", "groupby", "reverse", "sum",
})


def _printf_result_size(template: str, args: Any) -> int:
    """About how long `template % args` would be: each conversion prints at most the largest argument."""
    conversions = sum(1 for m in _PRINTF_SPEC.finditer(template) if not m.group(0).endswith("%"))
    if isinstance(args, tuple):
        return len(template) + sum(_size(a) for a in args)
    if isinstance(args, Mapping):
        largest = max((_size(v) for v in args.values()), default=0)
        return len(template) + conversions * largest
    return len(template) + conversions * _size(args)


def _refuse_printf_result(template: Any, args: Any) -> None:
    if isinstance(template, str) and args is not None:
        _refuse_size(_printf_result_size(template, args), "the formatted text")


@pass_environment
def _bounded_sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """Jinja's `sum`, in linear time and sized as it goes: `sum(lists, [])` in Python copies
    the total at every step (quadratic), uninterruptibly, in C."""
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    total = start
    built: list[Any] | None = None  # a list total, grown in place once it is our own copy
    built_size = 0
    for item in iterable:
        _check_deadline()  # each step below is sized, so checking between them bounds the whole
        if built is not None and isinstance(item, list):
            built_size += _size(item) - 1
            _refuse_size(built_size, "the result of 'sum'")
            built.extend(item)
            continue
        if built is not None:
            total, built = built, None
        total = environment.call_binop(None, "+", total, item)
        if isinstance(total, list) and total is not start:
            built, built_size = total, _size(total)
    return built if built is not None else total



def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` with its arguments checked first (`_FILTER_CHECKS`) and its result's size after."""
    check = _FILTER_CHECKS.get(name)
    signature = inspect.signature(func)
    passes_context = getattr(func, "jinja_pass_arg", None) is not None

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if name == "join" and len(args) > passes_context:
            # The separator repeats between every item: size the result before building it.
            items = list(args[passes_context])
            separator = args[passes_context + 1] if len(args) > passes_context + 1 else kwargs.get("d", "")
            _refuse_size(_joined_size(items, str(separator)), "the joined text")
            args = (*args[:passes_context], items, *args[passes_context + 1:])
        elif check is not None:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return func(*args, **kwargs)  # the filter says what is wrong with its arguments
            check(dict(bound.arguments))
        if name not in _NON_COPYING_FILTERS:  # it prints or copies its input: size that first
            for argument in (*args[passes_context:], *kwargs.values()):
                _refuse_sized(argument, f"the input of '{name}'")
        result = _refuse_large(func(*args, **kwargs), f"the result of '{name}'")
        _charge(result)
        return result

    return bounded


def _bounded_json_dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps`, stopping as soon as the text passes the limit (for `tojson`)."""
    parts, size = [], 0
    for part in json.JSONEncoder(**kwargs).iterencode(value):
        size += len(part)
        _refuse_size(size, "the JSON text")
        parts.append(part)
    return "".join(parts)


_STR_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


class _CodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b ~ …` is joined in one call no sandbox hook sees: have it sized first.
        self.write("environment.checked_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _StepSandbox(SandboxedEnvironment):
    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"**", "*", "+", "-", "%"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        result = self._checked_binop(context, operator_name, left, right)
        _charge(result)
        return result

    def _checked_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        """Each check sizes the operands: the value is never built to be measured."""
        both_ints = _is_int(left) and _is_int(right)
        if operator_name == "**":
            if (both_ints and right > 0
                    and max(abs(left), 2).bit_length() * right > MAX_POWER_RESULT_BITS):
                raise SecurityError("the result of '**' would be too large")
            return operator.pow(left, right)
        if operator_name == "*":
            if both_ints:
                _refuse_bits(left.bit_length() + right.bit_length(), "the result of '*'")
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and _is_int(times) and times > 0:
                    # Items count as what they hold: `[[0] * 999999] * 100` is 100 million.
                    each = len(seq) if isinstance(seq, str) else _size(seq, MAX_VALUE_CHARS // times + 1)
                    if each * times > MAX_VALUE_CHARS:
                        raise SecurityError(f"the result of '*' would be too large (over {MAX_VALUE_CHARS} long)")
            return operator.mul(left, right)
        if operator_name in ("+", "-") and both_ints:
            _refuse_bits(max(left.bit_length(), right.bit_length()) + 1, f"the result of '{operator_name}'")
        if operator_name == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                sized = len if isinstance(left, str) and isinstance(right, str) else _size
                _refuse_size(sized(left) + sized(right), "the result of '+'")
            return operator.add(left, right)
        if operator_name == "%":
            _refuse_printf_widths(left)
            _refuse_printf_result(left, right)
            return _refuse_large(operator.mod(left, right), "the result of '%'")
        return super().call_binop(context, operator_name, left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
        if isinstance(owner, str):
            if name in _STR_WIDTH_METHODS and args:
                _refuse_width(args[0], f"{name} width")
                if name == "expandtabs" and isinstance(args[0], int):
                    _refuse_size(len(owner) + owner.count("\t") * args[0], "the expanded text")
            elif name == "join" and args:
                items = list(args[0])
                _refuse_size(_joined_size(items, owner), "the joined text")
                args = (items, *args[1:])
            elif name == "replace" and len(args) >= 2 and all(isinstance(a, str) for a in args[:2]):
                _refuse_size(_replaced_size(owner, args[0], args[1], *args[2:3]), "the replaced text")
        result = _refuse_large(super().call(context, obj, *args, **kwargs), f"the result of {name or 'a call'}")
        if isinstance(owner, (list, dict, set)):
            _refuse_large(owner, f"a {type(owner).__name__} grown by {name}")
            if name in ("append", "extend", "insert", "update", "add", "setdefault"):
                _charge(args[0] if args else None)
        _charge(result)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = value.__self__
        _refuse_format_widths(template)
        fields = sum(1 for _, name, _, _ in _format_fields(template) if name is not None)

        def sized(*args: Any, **kwargs: Any) -> str:
            # Each field prints at most the largest argument (a mapping for format_map counts whole).
            largest = max((_size(a) for a in (*args, *kwargs.values())), default=0)
            _refuse_size(len(template) + fields * largest, "the formatted text")
            return _charge(wrapped(*args, **kwargs))

        return sized

    def concat(self, parts: Any) -> str:  # Jinja joins every output through it
        collected, size = [], 0
        for part in parts:
            size += len(part)
            _refuse_size(size, "the rendered text")
            collected.append(part)
        return _charge("".join(collected))

    def checked_join(self, parts: tuple[Any, ...]) -> str:
        _refuse_size(sum(len(p) if isinstance(p, str) else _size(p) for p in parts), "the result of '~'")
        return _charge(markup_join([p if isinstance(p, str) else str(p) for p in parts]))


class _Budget:
    """Counts what a render does through a trace function (template lines, Python calls)
    and stops it, with a SecurityError raised inside it, once over the budget or the deadline;
    adds up what it builds (`charge`) against the memory ceiling. The size checks keep every
    single operation short, so the deadline checked between them holds during evaluation."""

    def __init__(self) -> None:
        self.operations = 0
        self.built = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self._previous: Any = None
        self._token: Any = None

    def __enter__(self) -> None:
        # Installed only while a template runs: compiling (cached) is not the author's work.
        self._previous = sys.gettrace()
        self._token = _CURRENT_BUDGET.set(self)
        sys.settrace(self.on_call)

    def __exit__(self, *exc_info: object) -> None:
        sys.settrace(self._previous)
        _CURRENT_BUDGET.reset(self._token)

    def charge(self, size: int) -> None:
        self.built += size
        if self.built > MAX_RENDER_BUILT:
            raise SecurityError(f"the templates built more than {MAX_RENDER_BUILT} characters or items")

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise SecurityError(f"rendering took longer than {MAX_RENDER_SECONDS:g} s")

    def _tick(self) -> None:
        self.operations += 1
        if self.operations > MAX_RENDER_OPERATIONS:
            raise SecurityError(f"the templates took more than {MAX_RENDER_OPERATIONS} operations")
        if not self.operations % 64:
            self.check_deadline()

    def on_call(self, frame: Any, event: str, arg: Any) -> Any:
        self._tick()
        return self._on_line if frame.f_code.co_filename == _TEMPLATE_FILENAME else None

    def _on_line(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            self._tick()
        return self._on_line


# The render under way in this thread (the dev server renders in several at once).
_CURRENT_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _charge(value: Any) -> Any:
    """Count what was just built against the render's memory ceiling; returns `value`."""
    budget = _CURRENT_BUDGET.get()
    if budget is not None and isinstance(value, (str, bytes, list, tuple, dict, set)):
        budget.charge(len(value))
    return value


def _check_deadline() -> None:
    budget = _CURRENT_BUDGET.get()
    if budget is not None:
        budget.check_deadline()


def _finalize(value: Any) -> Any:
    """Every `{{ … }}` output, before Jinja prints it: a list or a mapping is sized first."""
    if not isinstance(value, (str, int, float)):
        _refuse_sized(value, "the printed value")
    return value


@lru_cache(maxsize=1)
def _environment() -> _StepSandbox:
    # autoescape off: outputs are data (JSON, URLs, prompts), not HTML.
    env = _StepSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=_finalize)
    # Only pure helpers stay; `lipsum` is noise in a data pipeline.
    env.globals.pop("lipsum", None)
    env.filters = {name: _bounded_filter(name, f) for name, f in {**env.filters, "sum": _bounded_sum}.items()}
    env.policies["json.dumps_function"] = _bounded_json_dumps
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
    """Render every string in `value` (recursively through dicts and lists), within one
    operation budget and deadline for the whole of `value`."""
    return _render(value, variables(ctx), path, _Budget())


def _render(value: Any, variables: dict[str, Any], path: str, budget: _Budget) -> Any:
    if isinstance(value, str):
        return render_string(value, variables, path=path, budget=budget)
    if isinstance(value, Mapping):
        return {key: _render(item, variables, f"{path}.{key}", budget) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_render(item, variables, f"{path}[{i}]", budget) for i, item in enumerate(value)]
    return value


def render_string(source: str, variables: dict[str, Any], *, path: str = "template",
                  budget: _Budget | None = None) -> Any:
    if not any(marker in source for marker in _MARKERS):
        return source
    try:
        kind, compiled = _compile(source)
        with budget or _Budget():
            if kind == "native":
                return _plain(_refuse_sized(compiled(**variables), "the value"))
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
