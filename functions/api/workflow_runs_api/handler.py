"""Lambda entry point: Mangum adapts API Gateway REST proxy events to the FastAPI app.

In Lambda the init phase does the heavy work (`prime`: imports, the app, the service and
its clients, one request to `/health` through Mangum and the reply models warmed, no I/O),
so with SnapStart a restored environment's first request costs what a warm one does.
Anywhere else importing this module builds nothing: the app is built on first use.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from mangum import Mangum
from workflow_runs import telemetry
from workflow_runs.lambda_entry import LambdaEntry


@lru_cache(maxsize=1)
def _adapter() -> Mangum:
    from workflow_runs.settings import get_settings

    from .app import create_app

    # One invocation owns Mangum's event loop: the routes' store calls run inline instead of
    # on a worker thread that Mangum's per-invocation task would start afresh every time.
    app = create_app(settings=get_settings(), one_request_per_loop=True)
    return Mangum(app, lifespan="off", api_gateway_base_path="/")


def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _adapter()(event, context)


def _correlation(event: Any, context: Any) -> dict[str, Any]:
    # API Gateway's request id is the one the caller sees (x-amzn-RequestId); the Lambda's
    # own is in the log record as function_request_id.
    request_context = (event or {}).get("requestContext") or {} if isinstance(event, dict) else {}
    return {"request_id": request_context.get("requestId") or getattr(context, "aws_request_id", None)}


entry = LambdaEntry(telemetry.API, _handle, correlation=_correlation)
handler = entry.handler


def prime() -> None:
    """Everything a first request would otherwise build, without I/O."""
    from workflow_runs.models import ActivityRun, Status, WorkflowRun

    from . import schemas

    adapter = _adapter()
    entry.instrumented()
    _ready_clients()
    # Routing, the middleware, the error handlers and the auth dependency: /health answers
    # 200, and a run read without credentials is refused before it reaches the store.
    for path, expected in (("/health", 200), (f"/api/v1/workflow-runs/{_PRIMING_RUN}", 401)):
        _rehearse(adapter, _priming_event(path), expected)
    # The reply models' validators and serializers (pydantic builds them lazily).
    stamp = "2026-01-01T00:00:00.000Z"
    run = WorkflowRun(id=_PRIMING_RUN, workflow_id="00000000-0000-4000-8000-000000000001",
                      workflow_name="priming", status=Status.COMPLETED, inputs=[], created_at=stamp, updated_at=stamp,
                      activity_runs=[ActivityRun(id="a", step_id="s", step_name="s", status=Status.COMPLETED,
                                                 attempt=1, created_at=stamp, updated_at=stamp)])
    schemas.RunReply(workflowRun=run).model_dump_json(by_alias=True)
    _rehearse_a_run_read()  # last: what it leaves warm is what the first request needs


def _rehearse_a_run_read() -> None:
    """`GET /{runId}` as a VPC-internal caller sends it, through the whole handler (Powertools'
    wrapper included: its logs and metrics go nowhere), the store's Query answered in this
    process with a run as the store writes it, until the path's code is specialized. Needs
    the private API's id (the stack sets it); without one the 401 above is all there is."""
    from workflow_runs.settings import get_settings
    from workflow_runs.store import rehearsal
    from workflow_runs_http.dependencies import _default_service

    private_api_ids = get_settings().private_api_ids
    if not private_api_ids:
        return
    store = _default_service().store
    items = rehearsal.run_items(store, "priming", _PRIMING_RUN)
    event = _priming_event(f"/api/v1/workflow-runs/{_PRIMING_RUN}", tenant="priming", api_id=private_api_ids[0])
    answers = {"Query": {"Items": items, "Count": len(items), "ScannedCount": len(items)}}
    entry.rehearse(lambda _: (event, rehearsal.answered_here(store.client, answers)),
                    lambda reply: reply.get("statusCode") == 200)


def _rehearse(handle: Any, event: dict[str, Any], expected: int) -> None:
    reply = handle(event, telemetry.RehearsalContext())
    if reply.get("statusCode") != expected:
        raise RuntimeError(f"priming request {event['path']} answered {reply.get('statusCode')}, not {expected}")


def _remake_clients() -> None:
    from workflow_runs_http.dependencies import _default_service

    _default_service.cache_clear()
    _ready_clients()


def _ready_clients() -> None:
    """The store's and the orchestrator's clients made, and the store's operations rehearsed
    (answered in-process: no request leaves), so a first request finds botocore ready."""
    from workflow_runs.store import warm_up
    from workflow_runs_http.dependencies import _default_service

    service = _default_service()
    getattr(service.orchestrator, "client", None)
    warm_up(service.store)


_PRIMING_RUN = "00000000-0000-4000-8000-000000000000"


def _priming_event(path: str, *, tenant: str | None = None, api_id: str | None = None) -> dict[str, Any]:
    headers = {"Host": "priming.invalid", **({"X-Tenant-Id": tenant} if tenant else {})}
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": "GET", "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": "GET", "path": path, "stage": "priming",
                           "requestId": "priming", "identity": {"sourceIp": "127.0.0.1"},
                           **({"apiId": api_id} if api_id else {})},
    }


# After a restore whose clients could not renew their credentials: the service and its
# clients made again here rather than on the first request.
entry.init(prime, ready=_remake_clients)
