"""The stream function's operations as OpenAPI path items (data): the API's generator
(`workflow_runs_api.openapi`, `make openapi`) merges them into docs/openapi.json, so the one
document covers both functions behind the one base URL. Kept beside the routes they describe;
tests/api/test_openapi.py checks the document is current and the routes match it."""

from __future__ import annotations

from typing import Any

from workflow_runs.events import sse_frame_schema
from workflow_runs_http.execute_body import EXECUTE_BODY, IDEMPOTENCY_KEY_DESCRIPTION, IDEMPOTENCY_KEY_HEADER

from .cursors import MAX_CURSOR_CHARS
from .routes import RUNS

TAG = "workflow runs (live)"
ERROR_REPLY = "#/components/schemas/ErrorReply"
CURSOR = {"type": "string", "maxLength": MAX_CURSOR_CHARS}


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": {"$ref": ERROR_REPLY}}}}
    if retry_after:
        response["headers"] = {"Retry-After": {"description": "seconds to wait before trying again",
                                               "schema": {"type": "integer"}}}
    return response


SSE_200 = {
    "description": "Server-Sent Events: first a `retry: <ms>` line, then `workflow-run`, `activity-run`, "
    "`thinking` and `ping` events, then one closing `result` or `error` — or, at the stream's longest life "
    "(STREAM_MAX_SECONDS), an end without one: resume with `Last-Event-ID`. See docs/streaming.md.",
    # One event of the stream (what an SSE parser yields per frame); `data` is JSON text.
    "content": {"text/event-stream": {"schema": sse_frame_schema()}},
}
ERRORS = {
    "400": _error("Invalid input: `details` says what to fix"),
    "401": _error("No credential, or a JWT that fails verification"),
    "404": _error("Unknown, or another tenant's"),
    "429": _error("`TooManyRequests`: the tenant has STREAM_MAX_PER_TENANT streams open", retry_after=True),
    "500": _error("Internal error (never a stack trace)"),
    "503": _error("`Unavailable`: the store stayed busy; nothing was changed", retry_after=True),
}


def paths() -> dict[str, dict[str, Any]]:
    return {
        f"{RUNS}/execute/stream": {
            "post": {
                "tags": [TAG],
                "summary": "Execute a workflow and stream its events",
                "operationId": "execute_stream",
                "parameters": [{
                    "name": IDEMPOTENCY_KEY_HEADER, "in": "header", "required": False,
                    "description": IDEMPOTENCY_KEY_DESCRIPTION,
                    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
                }],
                **EXECUTE_BODY,
                "responses": {"200": SSE_200, **ERRORS, "413": _error("Body over the documented limit")},
            }
        },
        f"{RUNS}/{{runId}}/events": {
            "get": {
                "tags": [TAG],
                "summary": "A run's events: from the first, or after Last-Event-ID / ?after=",
                "operationId": "run_events",
                "parameters": [
                    {"name": "runId", "in": "path", "required": True, "description": "a UUID",
                     "schema": {"type": "string"}},
                    {"name": "after", "in": "query", "required": False,
                     "description": "stream the events after this event id", "schema": CURSOR},
                    {"name": "Last-Event-ID", "in": "header", "required": False,
                     "description": "the id of the last event received (what EventSource sends on reconnect); "
                     "with `after`, the later one wins", "schema": CURSOR},
                ],
                "responses": {
                    "200": SSE_200,
                    "204": {"description": "Resumed at or after the run's closing event: nothing follows "
                            "(a browser's EventSource stops reconnecting)"},
                    **ERRORS,
                },
            }
        },
    }
