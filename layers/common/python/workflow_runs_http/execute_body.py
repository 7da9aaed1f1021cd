"""Parsing the execute body: multipart/form-data (as the source document) or JSON with the
same fields. Form fields `inputs` and `envs` carry JSON text.

Framework-free (a Starlette `Request`), shared by the API app and the stream app; the
request model (pydantic) is imported on first use."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from workflow_runs.errors import ValidationFailed

from .errors import describe_validation
from .limits import BodyTooLarge
from .strict_json import InvalidJson, loads_strict

EXECUTE_FIELDS = ("workflowId", "inputs", "envs")


def _closed_multipart(body: bytes, content_type: str) -> bool:
    """The body ends with its closing boundary `--<boundary>--` (and optional CRLF)."""
    boundary = next(
        (p.split("=", 1)[1].strip().strip('"') for p in content_type.split(";")[1:]
         if p.strip().lower().startswith("boundary=")),
        "",
    )
    return bool(boundary) and body.rstrip(b"\r\n").endswith(b"--" + boundary.encode("latin-1", "replace") + b"--")

if TYPE_CHECKING:
    from workflow_runs.service import ExecuteRequest

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_DESCRIPTION = "repeat-safe execute: a repeat returns the first run"

# The execute body for the OpenAPI document (FastAPI cannot infer it: we parse it ourselves).
EXECUTE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["workflowId"],
                    "properties": {
                        "workflowId": {"type": "string", "format": "uuid"},
                        "inputs": {"type": "string", "description": "a JSON object keyed by input name"},
                        "envs": {"type": "string", "description": "a JSON object of string → string (secret)"},
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["workflowId"],
                    "additionalProperties": False,
                    "properties": {
                        "workflowId": {"type": "string", "format": "uuid"},
                        "inputs": {"type": "object"},
                        "envs": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
                "example": {"workflowId": "6f1c2d3e-4b5a-4c6d-8e7f-8091a2b3c4d5", "inputs": {"topic": "tides"}},
            },
        },
    }
}


@cache
def _idempotency_key_pattern() -> re.Pattern[str]:
    from workflow_runs.service import IDEMPOTENCY_KEY_PATTERN

    return re.compile(IDEMPOTENCY_KEY_PATTERN)


def idempotency_key(request: Request) -> str | None:
    """The `Idempotency-Key` header checked as the API's header parameter checks it."""
    value = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if value is not None and not _idempotency_key_pattern().search(value):
        # Word for word what the API's header parameter says (FastAPI names it in lower case).
        raise ValidationFailed([(f"{IDEMPOTENCY_KEY_HEADER.lower()}: String should match pattern "
                                 f"'{_idempotency_key_pattern().pattern}'")])
    return value


async def parse_execute(request: Request) -> ExecuteRequest:
    from pydantic import ValidationError  # the stream app loads pydantic on first use
    from workflow_runs.service import ExecuteRequest

    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        payload = await _json_body(request)
    elif content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        payload = await _form_body(request)
    else:
        raise ValidationFailed("Content-Type must be multipart/form-data or application/json")
    try:
        return ExecuteRequest.model_validate(payload)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation(exc.errors())) from None


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        payload = loads_strict(await request.body() or b"null")
    except InvalidJson as exc:
        raise ValidationFailed(f"body: {exc}") from None
    if not isinstance(payload, dict):
        raise ValidationFailed("the body must be a JSON object")
    unknown = sorted(set(payload) - set(EXECUTE_FIELDS))
    if unknown:
        raise ValidationFailed([f"{name}: unknown field" for name in unknown])
    return payload


async def _form_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").lower().startswith("multipart/") and not _closed_multipart(
        await request.body(), request.headers["content-type"]
    ):
        # python-multipart accepts a body cut short after a complete part; we do not.
        raise ValidationFailed("the multipart body is incomplete (no closing boundary)")
    try:
        form = await request.form(max_files=0, max_fields=len(EXECUTE_FIELDS) + 5)
    except BodyTooLarge:
        raise  # a streamed body over the limit is 413 (the limit middleware answers), not a broken body
    except Exception:  # noqa: BLE001 - python-multipart raises several types for a broken body
        raise ValidationFailed("the multipart body could not be parsed") from None
    problems: list[str] = []
    payload: dict[str, Any] = {}
    for name, value in form.multi_items():
        if name not in EXECUTE_FIELDS:
            problems.append(f"{name}: unknown field")
        elif not isinstance(value, str):
            problems.append(f"{name}: must be a text field, not a file")
        elif name in payload:
            problems.append(f"{name}: given more than once")
        elif name == "workflowId":
            payload[name] = value.strip()
        else:
            try:
                payload[name] = loads_strict(value) if value.strip() else {}
            except InvalidJson as exc:
                problems.append(f"{name}: {exc}")
    if problems:
        raise ValidationFailed(problems)
    return payload
