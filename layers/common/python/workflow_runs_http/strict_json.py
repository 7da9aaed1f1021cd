"""Strict JSON for request bodies and JSON form fields.

What a client sends is refused with a 400 that says why, never parsed into something that
breaks later (a 500) or changes meaning on the way back:
- text that is not UTF-8, or not JSON;
- nesting deeper than MAX_JSON_DEPTH (50 000 levels would overflow the parser's stack, a few
  hundred the serialiser's);
- integers of more than MAX_INTEGER_DIGITS digits;
- NaN, Infinity and numbers that overflow to it: JSON has no such numbers, and they would come
  back as null;
- strings holding a lone surrogate (`"\\ud800"`): they are not text, and cannot be written as
  UTF-8 anywhere.

Framework-free; `json_body.StrictJsonRoute` applies it to the bodies FastAPI parses itself.
"""

from __future__ import annotations

import email.message
import json
import math
import re
from typing import Any

MAX_JSON_DEPTH = 64
MAX_INTEGER_DIGITS = 100
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidJson(ValueError):
    """Why a JSON text was refused, as a phrase that follows `<where>: `."""


def loads_strict(raw: bytes | str) -> Any:
    """The JSON value of `raw`, or InvalidJson saying what is wrong with it."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise InvalidJson("not UTF-8 text") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise InvalidJson("not valid JSON") from None
    problem = _structure_problem(value)
    if problem:
        raise InvalidJson(problem)
    return value


def _no_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InvalidJson("a number is too large to be represented")
    return number


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise InvalidJson(f"an integer has more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _structure_problem(value: Any) -> str | None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "a string holds a lone surrogate (\\ud800-\\udfff), which is not text"
        elif isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return f"nested deeper than {MAX_JSON_DEPTH} levels"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def is_json_content_type(content_type: str | None) -> bool:
    """What FastAPI parses as JSON: application/json or application/*+json."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))
