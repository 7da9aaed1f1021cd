"""Reply shapes of the API, for the OpenAPI document and its examples."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from workflow_runs.models import Workflow, WorkflowRun, WorkflowRunSummary
from workflow_runs.service import CancelResult
from workflow_runs.states import Status

RUN_ID = "0b8f6c1e-7d6a-4c55-9a55-5f4b1d2c3e4f"
WORKFLOW_ID = "6f1c2d3e-4b5a-4c6d-8e7f-8091a2b3c4d5"
RETRY_ID = "9d3e1f2a-6b5c-4d4e-8f7a-1b2c3d4e5f60"
STAMP = "2026-11-28T12:00:00.000Z"
RUN_EXAMPLE: dict[str, Any] = {
    "id": RUN_ID, "workflowId": WORKFLOW_ID, "workflowName": "Summarise", "status": "completed",
    "inputs": [{"name": "topic", "value": "tides"}], "createdAt": STAMP, "updatedAt": STAMP,
    "activityRuns": [{"id": "3a1f6c1e-7d6a-5c55-9a55-5f4b1d2c3e40", "stepId": "summary", "stepName": "Summarise",
                      "status": "completed", "outputs": {"value": "Tides rise twice a day."}, "attempt": 1,
                      "createdAt": STAMP, "updatedAt": STAMP}],
    "error": None, "cancelReason": None,
}


class Pagination(BaseModel):
    page: int
    limit: int
    total: int
    totalPages: int


class RunPagination(Pagination):
    nextToken: str | None = Field(description="give it as `?nextToken=` (same filters) for the next page; "
                                              "null on the last page")


class RunReply(BaseModel):
    success: Literal[True] = True
    workflowRun: WorkflowRun

    model_config = ConfigDict(json_schema_extra={"examples": [{"success": True, "workflowRun": RUN_EXAMPLE}]})


class ExecuteReply(BaseModel):
    success: bool = Field(description="true when the run completed")
    workflowRun: WorkflowRun

    model_config = ConfigDict(json_schema_extra={"examples": [{"success": True, "workflowRun": RUN_EXAMPLE}]})


class RetryReply(BaseModel):
    success: Literal[True] = True
    workflowRun: WorkflowRun = Field(description="the new run: `retryOf` names the failed run; the steps it "
                                                 "completed are copied with `reused: true`")

    model_config = ConfigDict(json_schema_extra={"examples": [{"success": True, "workflowRun": {
        **RUN_EXAMPLE, "id": RETRY_ID, "status": "scheduled", "retryOf": RUN_ID,
        "activityRuns": [{**RUN_EXAMPLE["activityRuns"][0], "id": "5c2e7d2f-8e7b-5d66-8b66-6a5c2e3d4f51",
                          "reused": True}]}}]})


ETAG_HEADER = {"ETag": {"schema": {"type": "string"}, "description": 'the workflow\'s version, quoted: `"3"`'}}


class RunList(BaseModel):
    success: Literal[True] = True
    data: list[WorkflowRunSummary]
    pagination: RunPagination


# One field per status, in the statuses' own order (`workflow_runs.states.Status`).
Counts = create_model("Counts", **{status.value: (int, ...) for status in Status})  # type: ignore[call-overload]


class DashboardReply(BaseModel):
    success: Literal[True] = True
    workflowId: str
    total: int
    counts: Counts

    model_config = {"json_schema_extra": {"examples": [{
        "success": True, "workflowId": WORKFLOW_ID, "total": 7,
        "counts": {status.value: {"running": 1, "completed": 5, "failed": 1}.get(status.value, 0)
                   for status in Status}}]}}


class CancelReply(BaseModel):
    success: Literal[True] = True
    results: list[CancelResult]

    model_config = {"json_schema_extra": {"examples": [{"success": True, "results": [
        {"runId": RUN_ID, "status": "cancelled"},
        {"runId": "1c8f6c1e-7d6a-4c55-9a55-5f4b1d2c3e4f", "status": "already_completed", "message": "run already completed"}]}]}}


class WorkflowReply(BaseModel):
    success: Literal[True] = True
    workflow: Workflow


class WorkflowList(BaseModel):
    success: Literal[True] = True
    data: list[Workflow]
    pagination: Pagination


class ErrorReply(BaseModel):
    success: Literal[False] = False
    error: str = Field(description="ValidationError | Unauthorized | Forbidden | NotFound | Conflict | PayloadTooLarge | Unavailable | InternalError")
    details: str | list[str]


def errors(*codes: int) -> dict[int | str, dict]:
    text = {400: "Invalid input: `details` says what to fix", 401: "No credential, or a JWT that fails verification",
            403: "Forbidden: a decision from a caller not in the approval step's `approvers`",
            404: "Unknown, or another tenant's",
            409: "Idempotency-Key reused with a different body, or by another caller; the approval step is not "
                 "waiting for a decision (decided already, not reached, or the run ended); a retry of a run "
                 "that is not failed (or was retried already); a stale workflow `version` / If-Match",
            413: "Body over the documented limit", 500: "Internal error (never a stack trace)"}
    return {code: {"model": ErrorReply, "description": text[code]} for code in codes}


def pagination(page: int, limit: int, total: int) -> Pagination:
    return Pagination(page=page, limit=limit, total=total, totalPages=(total + limit - 1) // limit)


def run_pagination(page: int, limit: int, total: int, next_token: str | None) -> RunPagination:
    return RunPagination(**pagination(page, limit, total).model_dump(), nextToken=next_token)

