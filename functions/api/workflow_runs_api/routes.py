"""Thin HTTP adapters: parse, authorise, call one service function, shape the reply."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from workflow_runs.approvals import DecisionRequest
from workflow_runs.auth import Principal
from workflow_runs.models import Status, WorkflowPut
from workflow_runs.service import CancelRequest, ListQuery, RunService, canonical_uuid
from workflow_runs_http.blocking import call_blocking
from workflow_runs_http.deadlines import answer_deadline
from workflow_runs_http.dependencies import ServiceDep
from workflow_runs_http.dependencies import service as service_of
from workflow_runs_http.errors import parse_query
from workflow_runs_http.etags import IfMatch, etag, if_match_version
from workflow_runs_http.forms import EXECUTE_BODY, IdempotencyKey, parse_execute
from workflow_runs_http.json_body import StrictJsonRoute
from workflow_runs_http.security import PrincipalDep, current_principal

from . import schemas

RUNS = "/api/v1/workflow-runs"
# JSON bodies are checked strictly (depth, numbers, surrogates) before FastAPI parses them.
runs = APIRouter(prefix=RUNS, tags=["workflow runs"], route_class=StrictJsonRoute)
workflows = APIRouter(prefix="/api/v1/workflows", tags=["workflows"], route_class=StrictJsonRoute)

UuidPath = Annotated[str, Path(description="a UUID", examples=[schemas.RUN_ID])]
Page = Annotated[int, Query(ge=1, le=10_000, description="page number, from 1")]
Limit = Annotated[int, Query(ge=1, le=100, description="items per page, 1–100")]


@runs.post(
    "/execute",
    response_model=schemas.ExecuteReply,
    responses={202: {"model": schemas.ExecuteReply, "description": "Still running: follow `Location`"},
               **schemas.errors(400, 401, 404, 409, 413, 500)},
    openapi_extra=EXECUTE_BODY,
    summary="Execute a workflow (blocking, within a budget)",
)
async def execute(request: Request, principal: PrincipalDep, service: ServiceDep,
                  idempotency_key: IdempotencyKey = None) -> Response:
    # Counted from the request's arrival: auth, parsing and the start have used part of it.
    deadline = answer_deadline(request.scope, service.settings.execute_wait_seconds)
    body = await parse_execute(request)
    run, ended = await call_blocking(request, service.execute, principal.tenant, body, idempotency_key,
                                     subject=principal.subject, deadline=deadline)
    reply = schemas.ExecuteReply(success=run.status is Status.COMPLETED, workflowRun=run)
    content = reply.model_dump(mode="json", by_alias=True)
    if ended:
        return JSONResponse(content)
    return JSONResponse(content, status_code=202, headers={"Location": f"{_base_path(request)}{RUNS}/{run.id}"})


def _base_path(request: Request) -> str:
    """The prefix API Gateway saw before our path (its stage, or a custom domain's mapping), so
    `Location` works on the default execute-api host too. Read from the platform's request
    context, never from a header."""
    context = (request.scope.get("aws.event") or {}).get("requestContext") or {}
    seen, ours = context.get("path") or "", request.url.path
    return seen[: -len(ours)] if ours and seen.endswith(ours) else ""


@runs.post("/cancel", response_model=schemas.CancelReply, responses=schemas.errors(400, 401, 404, 413, 500),
           response_model_exclude_none=True,  # `message` appears only when there is something to say
           summary="Cancel runs by id, or every non-terminal run of a workflow")
async def cancel(request: Request, body: Annotated[CancelRequest, Body()], principal: PrincipalDep,
                 service: ServiceDep) -> schemas.CancelReply:
    return schemas.CancelReply(results=await call_blocking(request, service.cancel, principal.tenant, body))


@runs.get("", response_model=schemas.RunList, responses=schemas.errors(400, 401, 500),
          summary="List runs, newest first")
async def list_runs(
    request: Request,
    principal: PrincipalDep,
    service: ServiceDep,
    workflowId: Annotated[str | None, Query(description="filter by workflow")] = None,
    status: Annotated[Status | None, Query(description="filter by status")] = None,
    page: Annotated[int | None, Query(ge=1, description="page number, from 1 (page × limit ≤ 10,000)")] = None,
    limit: Limit = 10,
    search: Annotated[str | None, Query(min_length=1, max_length=200, description="substring of the workflow name, any case")] = None,
    nextToken: Annotated[str | None, Query(max_length=512, description="the previous page's pagination.nextToken")] = None,
) -> schemas.RunList:
    query = parse_query(ListQuery, workflowId=workflowId, status=status, page=page or 1, limit=limit,
                        search=search, nextToken=nextToken, pageGiven=page is not None)
    result, number, token = await call_blocking(request, service.list_runs, principal.tenant, query)
    return schemas.RunList(data=result.items, pagination=schemas.run_pagination(number, limit, result.total, token))


@runs.get("/dashboard/{workflowId}", response_model=schemas.DashboardReply,
          responses=schemas.errors(400, 401, 404, 500), summary="Run counts per status of a workflow")
async def dashboard(request: Request, workflowId: UuidPath, principal: PrincipalDep,
                    service: ServiceDep) -> schemas.DashboardReply:
    workflow_id = canonical_uuid(workflowId, "workflowId")
    counts = await call_blocking(request, service.dashboard, principal.tenant, workflow_id)
    return schemas.DashboardReply(workflowId=workflow_id, total=sum(counts.values()), counts=schemas.Counts(**counts))


@runs.get("/{runId}", response_model=schemas.RunReply, responses=schemas.errors(400, 401, 404, 500),
          summary="A run with its activity runs")
async def get_run(request: Request, runId: UuidPath) -> Response:
    # The caller and the service are found as `PrincipalDep` and `ServiceDep` would find
    # them, without dependencies to solve: FastAPI's dependency solving is the largest cost
    # of the hottest read of the API.
    principal = await current_principal(request)
    service = await service_of(request)
    run = await call_blocking(request, service.get_run, principal.tenant, canonical_uuid(runId, "runId"))
    # Serialised once by the reply model itself: FastAPI would dump, validate and dump it
    # again for `response_model` (which still documents it).
    return Response(schemas.RunReply(workflowRun=run).model_dump_json(by_alias=True), media_type="application/json")


StepIdPath = Annotated[str, Path(description="a step id of the run's workflow", examples=["review"],
                                 pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
DecisionBody = Annotated[DecisionRequest | None, Body(description="optional")]


@runs.post("/{runId}/steps/{stepId}/approve", response_model=schemas.RunReply,
           responses=schemas.errors(400, 401, 403, 404, 409, 413, 500),
           summary="Approve a waiting approval step: it completes and the run goes on")
async def approve(request: Request, runId: UuidPath, stepId: StepIdPath, principal: PrincipalDep,
                  service: ServiceDep, body: DecisionBody = None) -> schemas.RunReply:
    return await _decide(request, runId, stepId, principal, service, body, approve=True)


@runs.post("/{runId}/steps/{stepId}/reject", response_model=schemas.RunReply,
           responses=schemas.errors(400, 401, 403, 404, 409, 413, 500),
           summary="Reject a waiting approval step: it and the run fail")
async def reject(request: Request, runId: UuidPath, stepId: StepIdPath, principal: PrincipalDep,
                 service: ServiceDep, body: DecisionBody = None) -> schemas.RunReply:
    return await _decide(request, runId, stepId, principal, service, body, approve=False)


async def _decide(request: Request, run_id: str, step_id: str, principal: Principal, service: RunService,
                  body: DecisionRequest | None, *, approve: bool) -> schemas.RunReply:
    # Who decided comes from the verified caller, never from the body: its subject, or
    # 'internal' for a VPC-internal call (auth.INTERNAL_SUBJECT).
    run = await call_blocking(request, service.decide_approval, principal.tenant, canonical_uuid(run_id, "runId"),
                              step_id, approve=approve, request=body or DecisionRequest(),
                              decided_by=principal.subject)
    return schemas.RunReply(workflowRun=run)


@runs.post(
    "/{runId}/retry",
    status_code=202,
    response_model=schemas.RetryReply,
    responses={202: {"description": "The retry started: follow `Location`",
                     "headers": {"Location": {"schema": {"type": "string"}, "description": "the new run"}}},
               **schemas.errors(400, 401, 404, 409, 500)},
    summary="Retry a failed run from the step that failed",
)
async def retry_run(runId: UuidPath, request: Request, principal: PrincipalDep, service: ServiceDep,
                    idempotency_key: IdempotencyKey = None) -> JSONResponse:
    run = await call_blocking(request, service.retry, principal.tenant, canonical_uuid(runId, "runId"),
                              idempotency_key, subject=principal.subject)
    content = schemas.RetryReply(workflowRun=run).model_dump(mode="json", by_alias=True)
    return JSONResponse(content, status_code=202, headers={"Location": f"{_base_path(request)}{RUNS}/{run.id}"})


@workflows.put("/{workflowId}", response_model=schemas.WorkflowReply,
               responses={200: {"headers": schemas.ETAG_HEADER}, **schemas.errors(400, 401, 409, 413, 500)},
               summary="Create or replace a workflow (bumps its version); `version` / If-Match make it conditional")
async def put_workflow(request: Request, workflowId: UuidPath, body: Annotated[WorkflowPut, Body()],
                       principal: PrincipalDep, service: ServiceDep, response: Response,
                       if_match: IfMatch = None) -> schemas.WorkflowReply:
    workflow = await call_blocking(request, service.replace_workflow, principal.tenant,
                                   canonical_uuid(workflowId, "workflowId"), body, if_match_version(if_match))
    response.headers["ETag"] = etag(workflow.version)
    return schemas.WorkflowReply(workflow=workflow)


@workflows.get("/{workflowId}", response_model=schemas.WorkflowReply,
               responses={200: {"headers": schemas.ETAG_HEADER}, **schemas.errors(400, 401, 404, 500)},
               summary="A workflow")
async def get_workflow(request: Request, workflowId: UuidPath, principal: PrincipalDep, service: ServiceDep,
                       response: Response) -> schemas.WorkflowReply:
    workflow = await call_blocking(request, service.get_workflow, principal.tenant,
                                   canonical_uuid(workflowId, "workflowId"))
    response.headers["ETag"] = etag(workflow.version)
    return schemas.WorkflowReply(workflow=workflow)


@workflows.get("", response_model=schemas.WorkflowList, responses=schemas.errors(400, 401, 500),
               summary="The tenant's workflows, by name")
async def list_workflows(request: Request, principal: PrincipalDep, service: ServiceDep, page: Page = 1,
                         limit: Limit = 10) -> schemas.WorkflowList:
    items, total = await call_blocking(request, service.list_workflows, principal.tenant, page, limit)
    return schemas.WorkflowList(data=items, pagination=schemas.pagination(page, limit, total))
