"""The events of a run's log: one typed schema, what an SSE stream carries.

The projector builds every event with the builders below; the blocking wait, the stream
follower and the CLI read them with the readers below; the stream's OpenAPI takes its
names and statuses from here. Each event is a name and a JSON object (`data`):

  `workflow-run`  {"content": {workflowRunId, status}}
  `activity-run`  {"content": {workflowRunId, activityRunId, stepId, status, attempt[, outputs]}}
                  (`outputs` only while it waits: an approval's {"prompt"}, a wait step's {"seconds"})
  `thinking`      {"content": <text>, "stepId", "activityRunId"}
  `result`        {"success": true, "workflowRun": <the run as GET returns it>}
  `error`         {"error": <message>, "details": {workflowRunId, status, stepId} | <why it cannot be followed>}

Free of pydantic (the projector and the follower load it lazily or not at all).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict, cast

from .states import (
    CLOSING_EVENTS,
    EVENT_ACTIVITY,
    EVENT_ERROR,
    EVENT_RESULT,
    EVENT_RUN,
    EVENT_THINKING,
    STATUS_VALUES,
    Status,
)

EVENT_PING = "ping"  # a keep-alive frame of the SSE response, never in the log
# Every name a log holds, in the order a run produces them (the OpenAPI's enum adds `ping`).
EVENT_NAMES = (EVENT_RUN, EVENT_ACTIVITY, EVENT_THINKING, EVENT_RESULT, EVENT_ERROR)


class RunContent(TypedDict):
    workflowRunId: str
    status: Status


class RunEventData(TypedDict):
    content: RunContent


class ActivityContent(TypedDict):
    workflowRunId: str
    activityRunId: str
    stepId: str
    status: Status
    attempt: int
    outputs: NotRequired[dict[str, Any]]


class ActivityEventData(TypedDict):
    content: ActivityContent


class ThinkingEventData(TypedDict):
    content: str
    stepId: str | None
    activityRunId: str | None


class ResultEventData(TypedDict):
    success: Literal[True]
    workflowRun: dict[str, Any]


class ErrorDetails(TypedDict):
    workflowRunId: str
    status: Status
    stepId: str | None


class ErrorEventData(TypedDict):
    error: str
    # A run's end: where it ended; a stream that cannot follow its run: why (a sentence).
    details: ErrorDetails | str


EventData = RunEventData | ActivityEventData | ThinkingEventData | ResultEventData | ErrorEventData


# ------------------------------------------------------------------ builders (the projector)


def run_event(run_id: str, status: str) -> tuple[str, RunEventData]:
    return EVENT_RUN, {"content": {"workflowRunId": run_id, "status": _status(status)}}


def activity_event(run_id: str, activity_run_id: str, step_id: str, status: str, attempt: int,
                   outputs: dict[str, Any] | None = None) -> tuple[str, ActivityEventData]:
    content: ActivityContent = {"workflowRunId": run_id, "activityRunId": activity_run_id, "stepId": step_id,
                                "status": _status(status), "attempt": attempt}
    if outputs is not None and status == Status.WAITING.value:
        content["outputs"] = outputs
    return EVENT_ACTIVITY, {"content": content}


def thinking_event(text: str, step_id: str | None, activity_run_id: str | None) -> tuple[str, ThinkingEventData]:
    return EVENT_THINKING, {"content": text, "stepId": step_id, "activityRunId": activity_run_id}


def result_event(run: dict[str, Any]) -> tuple[str, ResultEventData]:
    return EVENT_RESULT, {"success": True, "workflowRun": run}


def end_error_event(run_id: str, status: str, message: str | None, step_id: str | None) -> tuple[str, ErrorEventData]:
    """A failed or cancelled run's closing event."""
    text = message or ("run cancelled" if status == Status.CANCELLED.value else "run failed")
    return EVENT_ERROR, {"error": text, "details": {"workflowRunId": run_id, "status": _status(status),
                                                    "stepId": step_id}}


def cannot_follow_event(details: str, message: str = "the run cannot be followed") -> tuple[str, ErrorEventData]:
    """The stream's own closing event when it cannot follow its run (`details` says why)."""
    return EVENT_ERROR, {"error": message, "details": details}


def _status(value: str) -> Status:
    return Status(value)  # a str: the JSON carries its value


# ------------------------------------------------------------------ readers (waiting, follow, CLI)


def is_closing(name: str) -> bool:
    return name in CLOSING_EVENTS


def content_of(data: Any) -> dict[str, Any]:
    """A `workflow-run` / `activity-run` event's content (empty for anything else)."""
    content = data.get("content") if isinstance(data, dict) else None
    return content if isinstance(content, dict) else {}


def activity_of(name: str, data: Any) -> ActivityContent | None:
    """An `activity-run` event's content, or None for any other event."""
    if name != EVENT_ACTIVITY:
        return None
    content = content_of(data)
    if content.get("status") not in STATUS_VALUES:
        return None
    return cast(ActivityContent, content)


def waiting_step(name: str, data: Any) -> str | None:
    """The step id of an activity event that says its step is `waiting`, else None."""
    activity = activity_of(name, data)
    if activity is not None and activity["status"] == Status.WAITING.value:
        return str(activity.get("stepId"))
    return None


def carried_run(data: Any) -> dict[str, Any] | None:
    """The ended run a `result` event carries (the answer needs no read of its own)."""
    run = data.get("workflowRun") if isinstance(data, dict) else None
    return run if isinstance(run, dict) else None


def end_details(data: Any) -> ErrorDetails | None:
    """Where a run ended, from its closing `error` event; None when the stream itself failed."""
    details = data.get("details") if isinstance(data, dict) else None
    return cast(ErrorDetails, details) if isinstance(details, dict) else None


# ------------------------------------------------------------------ the stream's OpenAPI


def sse_frame_schema() -> dict[str, Any]:
    """One frame of the SSE response (what an SSE parser yields): the names from here."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "enum": [*EVENT_NAMES[:3], EVENT_PING, *EVENT_NAMES[3:]]},
            "data": {"type": "string", "description": "a JSON object (docs/streaming.md, Events); `status` is one "
                     f"of {', '.join(f'`{s.value}`' for s in Status)}"},
            "id": {"type": "string", "description": "the cursor to resume after (Last-Event-ID)"},
            "retry": {"type": "integer", "description": "the reconnect pace in ms (first frame only)"},
        },
    }
