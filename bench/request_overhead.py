"""2. Per-request overhead of the API handler for `GET /api/v1/workflow-runs/{runId}`: an API
Gateway REST proxy event through `workflow_runs_api.handler.handler` (Mangum → FastAPI → the
route → the service → a store faked in memory) and back, against the same route served by
Powertools' `APIGatewayRestResolver` with the same fake store, the same service, the same
principal rules and the same reply model. Both in one process, interleaved request by
request; ratio of the medians.

Both sides authenticate the same way, as a call through the private API (the request
context's `apiId` is listed in PRIVATE_API_IDS, the tenant comes from `X-Tenant-Id`), so no
RSA signature check drowns out what is being compared: the framework around the route."""

# No `from __future__ import annotations`: FastAPI must see the what-if route's real annotations.
import json
import os
import time
import uuid
from typing import Any

from . import Figure, SectionResult, median, us

PRIVATE_API_ID = "benchpriv1"
TENANT = "bench-tenant"
RUN_ID = "0b8f6c1e-7d6a-4c55-9a55-5f4b1d2c3e4f"
PATH = f"/api/v1/workflow-runs/{RUN_ID}"
TARGET = 2.0


class InMemoryStore:
    """The store methods `GET /{runId}` reaches (`RunService.get_run` → `get_run`)."""

    def __init__(self, runs: dict[tuple[str, str], Any]):
        self._runs = runs

    def get_run(self, tenant: str, run_id: str):
        from workflow_runs.errors import NotFound

        try:
            return self._runs[(tenant, run_id)]
        except KeyError:
            raise NotFound(f"workflow run {run_id} not found") from None


class NoOrchestrator:
    def start(self, run_id: str, orchestration: str = "standard") -> None:  # pragma: no cover - not reached by GET
        raise AssertionError("GET must not start anything")

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = "standard") -> bool:  # pragma: no cover
        raise AssertionError("GET must not stop anything")

    def describe(self, run_id: str) -> str | None:  # pragma: no cover
        return None


def sample_run():
    from workflow_runs.models import ActivityRun, RunInput, Status, WorkflowRun

    stamp = "2026-11-28T12:00:00.000Z"
    activities = [
        ActivityRun(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"a{i}")), step_id=f"s{i}", step_name=f"Step {i}",
                    status=Status.COMPLETED, outputs={"value": f"output of step {i}", "n": i}, attempt=1,
                    created_at=stamp, updated_at=stamp)
        for i in range(3)
    ]
    return WorkflowRun(id=RUN_ID, workflow_id=str(uuid.uuid5(uuid.NAMESPACE_URL, "wf")), workflow_name="Three steps",
                       status=Status.COMPLETED, inputs=[RunInput(name="topic", value="tides")],
                       created_at=stamp, updated_at=stamp, activity_runs=activities)


def rest_event(path: str = PATH) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event as the private API sends it."""
    headers = {"Host": "abc.execute-api.us-east-1.amazonaws.com", "Accept": "application/json",
               "X-Tenant-Id": TENANT, "User-Agent": "bench"}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}", "httpMethod": "GET", "path": f"/prod{path}", "stage": "prod",
            "apiId": PRIVATE_API_ID, "accountId": "123456789012", "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "10.0.0.1", "userAgent": "bench"}, "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000), "domainName": "abc.execute-api.us-east-1.amazonaws.com",
        },
        "body": None,
        "isBase64Encoded": False,
    }


class Context:
    function_name = "bench-api"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-api"
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def mangum_handler(service: Any):
    """The real entry point, `workflow_runs_api.handler.handler`, with the service injected
    through the app's state (the seam the app reads before its default factory)."""
    from workflow_runs_api import handler as api_handler

    api_handler._adapter.cache_clear()
    api_handler._adapter().app.state.service = service
    return api_handler.handler


def powertools_handler(service: Any, settings: Any):
    """The same route on Powertools: the same validation, principal rules, service call and
    reply model; Powertools serialises the reply."""
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
    from workflow_runs.auth import internal_principal
    from workflow_runs.errors import DomainError
    from workflow_runs.service import canonical_uuid
    from workflow_runs_api.schemas import RunReply

    app = APIGatewayRestResolver()

    def principal():
        context = app.current_event.request_context
        if context.api_id not in settings.private_api_ids or app.current_event.headers.get("authorization"):
            raise PermissionError("only the private-API path is wired here")
        return internal_principal(app.current_event.headers.get("x-tenant-id"))

    @app.get("/api/v1/workflow-runs/<runId>")
    def get_run(runId: str):
        try:
            caller = principal()
            run = service.get_run(caller.tenant, canonical_uuid(runId, "runId"))
        except DomainError as exc:  # pragma: no cover - not reached by the benchmark
            return Response(status_code=404, content_type="application/json",
                            body=json.dumps({"success": False, "error": str(exc)}))
        return RunReply(workflowRun=run).model_dump(mode="json", by_alias=True)

    return app.resolve


def uninstrumented(service: Any):
    """What-if, not a separate app: the shipped Mangum adapter without the Powertools
    Logger/Metrics/Tracer wrapper, so the report shows what the instrumentation costs."""
    from workflow_runs_api import handler as api_handler

    api_handler._adapter().app.state.service = service
    return api_handler._handle


def _threads_started_per_request(handler: Any, context: Any, n: int = 50) -> float:
    import threading

    started = 0
    original = threading.Thread.start

    def counting_start(self, *args, **kwargs):
        nonlocal started
        started += 1
        return original(self, *args, **kwargs)

    threading.Thread.start = counting_start
    try:
        for _ in range(n):
            handler(rest_event(), context)
    finally:
        threading.Thread.start = original
    return started / n


def run(quick: bool) -> SectionResult:
    os.environ.update({"RUNS_TABLE": "bench-runs", "EVENTS_TABLE": "bench-events",
                       "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:bench",
                       "PRIVATE_API_IDS": PRIVATE_API_ID, "AWS_DEFAULT_REGION": "us-east-1"})
    from workflow_runs.service import RunService
    from workflow_runs.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    service = RunService(InMemoryStore({(TENANT, RUN_ID): sample_run()}), NoOrchestrator(), settings)
    from workflow_runs import telemetry
    from workflow_runs_api import handler as api_handler

    bare_reference = powertools_handler(service, settings)
    handlers = {
        "subject": mangum_handler(service),
        # The same Powertools Logger/Metrics/Tracer wrapper as the shipped handler: a
        # Powertools app is instrumented too, so the ratio is the frameworks' own overhead.
        "reference": telemetry.instrument(telemetry.API, bare_reference, correlation=api_handler._correlation),
        "variant": uninstrumented(service),
        "bare_reference": bare_reference,
    }
    context = Context()

    # All must answer the same thing before any is timed.
    answers = {name: handler(rest_event(), context) for name, handler in handlers.items()}
    assert {a["statusCode"] for a in answers.values()} == {200}, answers
    bodies = [json.loads(a["body"]) for a in answers.values()]
    assert all(body == bodies[0] for body in bodies), "the handlers answer differently"
    threads = _threads_started_per_request(handlers["subject"], context)

    warmup, rounds = (200, 1500) if quick else (1000, 6000)
    names = list(handlers)
    for _ in range(warmup):
        for name in names:
            handlers[name](rest_event(), context)
    times: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for i in range(rounds):
        # Rotate who goes first, so none always runs right after another's cache effects.
        for name in names[i % len(names):] + names[: i % len(names)]:
            event = rest_event()
            started = clock()
            handlers[name](event, context)
            times[name].append(clock() - started)
    s, r, v, b = (median(times[name]) for name in names)
    ratio = s / r
    result = SectionResult(
        "request-overhead",
        "2. Per-request overhead of the API handler (`GET /{runId}`)",
        method=(
            "One process. An API Gateway REST proxy event for `GET /api/v1/workflow-runs/{runId}` goes through "
            "`workflow_runs_api.handler.handler` (Mangum, FastAPI, the route, `RunService.get_run`) with the "
            "store faked in memory (a run with 3 activity runs), and through a Powertools "
            "`APIGatewayRestResolver` serving the same route with the same service, principal rules "
            "(private-API call: request-context `apiId` + `X-Tenant-Id`, no JWT on either side) and reply "
            "model. Both carry the same Powertools Logger/Metrics/Tracer wrapper (`workflow_runs.telemetry.instrument`), "
            "so the ratio is the frameworks' own per-request cost. The same pair without that wrapper (the shipped "
            "Mangum adapter `workflow_runs_api.handler._handle` and the bare resolver) is timed beside them. All answers are checked equal first. {warmup} warm-up rounds, then {rounds} rounds "
            "timed request by request, rotating which handler goes first. Figure: median(Mangum/FastAPI) / "
            "median(Powertools)."
        ),
    )
    result.add(
        Figure("per-request time, the shipped handler (Mangum + FastAPI) / Powertools resolver (`GET /{runId}`), "
               "both with the same Powertools Logger/Metrics/Tracer wrapper",
               f"{ratio:.2f}× ({us(s)} vs {us(r)})", f"≤ {TARGET}×", ratio <= TARGET,
               key="request_overhead_vs_powertools", number=round(ratio, 3), unit="×"),
        Figure("the same pair without the Logger/Metrics/Tracer wrapper: Mangum + FastAPI / bare Powertools resolver",
               f"{v / b:.2f}× ({us(v)} vs {us(b)})", key="request_overhead_vs_powertools_uninstrumented",
               number=round(v / b, 3), unit="×", note=f"the wrapper costs {us(s - v)} per request"),
        Figure("threads started per invocation by the shipped handler", f"{threads:.1f}",
               key="threads_started_per_invocation_by_the_shipped_handler", number=threads),
    )
    if ratio > TARGET:
        result.notes.append(_why(threads, s, v, r))
    return result


def _why(threads: float, subject: float, variant: float, reference: float) -> str:
    return (
        f"Why: the shipped handler starts {threads:.1f} threads per invocation now (async routes whose store "
        "calls run inline under Mangum, workflow_runs_http/blocking.py) and `GET /{runId}` skips the second "
        "`response_model` pass and one dependency; what is left is FastAPI's own cost (routing over every "
        "route, solving the auth dependency, path validation, the middleware stack) and Mangum's loop cycle. "
        f"Without the Powertools wrapper the same request takes {us(variant)} ({variant / reference:.2f}× "
        "Powertools). A minimal FastAPI app with one route measures about 1× the resolver here, so the rest is "
        "the app's shape (two dozen routes, the auth dependency, the error handlers, the body limit). Reaching "
        "the target for certain means serving the API Gateway function with Powertools' resolver over the same "
        "`RunService` (FastAPI kept for the dev server and the OpenAPI document)."
    )
