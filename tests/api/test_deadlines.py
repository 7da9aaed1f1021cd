"""The blocking execute answers 202 with `Location` before API Gateway or Lambda would cut it
off: its budget is the least of EXECUTE_WAIT_SECONDS, the Lambda's remaining time and API
Gateway's 29 s, each less a margin, counted from the request's arrival."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import pytest
from workflow_runs.settings import get_settings
from workflow_runs_api import handler as api_handler
from workflow_runs_api import routes as api_routes
from workflow_runs_http import deadlines
from workflow_runs_http.deadlines import ARRIVED, answer_deadline

from tests.api.conftest import WORKFLOW, Api
from tests.api.lambda_events import PRIVATE_API, RUNS, multipart, rest_event

INTERNAL = {"X-Tenant-Id": "acme"}


@dataclass
class LambdaContext:
    """What Lambda hands the handler (every attribute the Powertools Logger reads); only the
    remaining time matters here."""

    remaining_ms: float
    aws_request_id: str = "req-1"
    function_name: str = "api"
    function_version: str = "1"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:api:live"
    log_group_name: str = "/aws/lambda/api"
    log_stream_name: str = "api"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_ms)


def _execute_through_the_handler(monkeypatch, context: LambdaContext, *, wait_seconds: str,
                                 gateway_behind_s: float | None = None) -> tuple[int, dict, dict, float, float]:
    monkeypatch.setenv("EXECUTE_WAIT_SECONDS", wait_seconds)
    get_settings.cache_clear()
    api_handler._adapter.cache_clear()
    workflow_id = str(uuid.uuid4())
    put = rest_event("PUT", f"/api/v1/workflows/{workflow_id}", api_id=PRIVATE_API,
                     headers={**INTERNAL, "Content-Type": "application/json"}, body=json.dumps(WORKFLOW))
    assert api_handler.handler(put, context)["statusCode"] == 200
    form, content_type = multipart({"workflowId": workflow_id, "inputs": '{"topic": "tides"}'})
    event = rest_event("POST", f"{RUNS}/execute", api_id=PRIVATE_API, base64_body=True,
                       headers={**INTERNAL, "Content-Type": content_type}, body=form)
    if gateway_behind_s is not None:  # API Gateway received it that long ago
        event["requestContext"]["requestTimeEpoch"] = int((time.time() - gateway_behind_s) * 1000)
    # The budget the route computed, as seconds from when it computed it: the rule's own
    # figure, so a busy machine (slow to reach the route, slow to answer) cannot move it.
    budgets: list[float] = []

    def recording_deadline(scope, wait_seconds, **kwargs):
        deadline = answer_deadline(scope, wait_seconds, **kwargs)
        budgets.append(deadline - time.monotonic())
        return deadline

    monkeypatch.setattr(api_routes, "answer_deadline", recording_deadline)
    started = time.monotonic()
    response = api_handler.handler(event, context)
    took = time.monotonic() - started
    assert len(budgets) == 1
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return response["statusCode"], headers, json.loads(response["body"]), took, budgets[0]


def test_a_lambda_with_little_time_left_answers_202_before_it_runs_out(lambda_env: None, monkeypatch):
    # Given a 25 s budget, but a Lambda with 2.5 s left (the run never ends: moto runs no steps)
    context = LambdaContext(remaining_ms=2500)
    # When the blocking execute runs through the Mangum handler
    status, headers, body, took, budget = _execute_through_the_handler(monkeypatch, context, wait_seconds="25")
    # Then it answers 202 with Location, its wait bounded by the remaining time less the margin
    assert status == 202
    assert headers["location"] == f"/prod{RUNS}/{body['workflowRun']['id']}"
    assert 2.5 - deadlines.LAMBDA_MARGIN_SECONDS - 0.5 < budget <= 2.5 - deadlines.LAMBDA_MARGIN_SECONDS
    assert budget < took < 25  # it did wait out that budget, and not the 25 s one


def test_time_spent_before_the_lambda_ran_counts_against_api_gateways_29_seconds(lambda_env: None, monkeypatch):
    # Given API Gateway received the request 26 s ago (a long cold start, a slow queue) and the
    # Lambda itself has minutes left
    context = LambdaContext(remaining_ms=300_000)
    status, headers, _, took, budget = _execute_through_the_handler(monkeypatch, context, wait_seconds="28",
                                                                   gateway_behind_s=26.0)
    # Then only what is left of 29 s less the margin is waited: about 1 s, not 28 (nor the 2 s
    # left of the 28 s budget)
    assert status == 202 and "location" in headers
    left = deadlines.API_GATEWAY_TIMEOUT_SECONDS - deadlines.API_GATEWAY_MARGIN_SECONDS - 26.0
    assert 0 < budget <= left + 0.01  # requestTimeEpoch has millisecond steps
    assert budget < took < 28


def test_slow_auth_is_counted_in_the_budget(api: Api):
    # Given a 1.5 s budget and a token check that takes 1 s (a cold JWKS fetch)
    verifier = api.client.app.state.verifier

    class SlowVerifier:
        def verify(self, token: str):
            time.sleep(1.0)
            return verifier.verify(token)

    api.client.app.state.verifier = SlowVerifier()
    api.service.settings = api.service.settings.model_copy(update={"execute_wait_seconds": 1.5})
    workflow_id = api.put_workflow()
    started = time.monotonic()
    response = api.client.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}},
                               headers=api.headers())
    took = time.monotonic() - started
    # Then it answers 202 about 1.5 s after arrival, not 1 + 1.5 s
    assert response.status_code == 202 and response.headers["location"].startswith(RUNS)
    assert 1.4 < took < 2.1


def test_a_slow_start_is_counted_in_the_budget(api: Api):
    start = api.orchestrator.start

    def slow_start(run_id: str, orchestration: str = "standard") -> None:
        time.sleep(1.0)
        start(run_id, orchestration)

    api.orchestrator.start = slow_start
    api.service.settings = api.service.settings.model_copy(update={"execute_wait_seconds": 1.2})
    workflow_id = api.put_workflow()
    started = time.monotonic()
    response = api.client.post(f"{RUNS}/execute", json={"workflowId": workflow_id, "inputs": {"topic": "x"}},
                               headers=api.headers())
    took = time.monotonic() - started
    assert response.status_code == 202
    assert 1.0 < took < 1.7


# ------------------------------------------------------------------ the rule itself


class Clock:
    def __init__(self, now: float = 1000.0, wall: float = 1_800_000_000.0):
        self.now, self.wall_now = now, wall

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall_now


@pytest.mark.parametrize(("wait", "remaining_s", "gateway_behind_s", "expected_left"), [
    (25.0, None, None, 25.0),                 # only the budget
    (25.0, 10.0, None, 9.0),                  # the Lambda's remaining time less its margin
    (28.0, None, 5.0, 29.0 - 2.0 - 5.0),      # the gateway's 29 s, counted from its arrival
    (3.0, 60.0, 1.0, 2.0),                    # the budget, counted from the gateway's arrival
    (25.0, 0.5, None, -0.5),                  # no time at all: answer at once
])
def test_the_deadline_is_the_least_bound_from_arrival(wait, remaining_s, gateway_behind_s, expected_left):
    clock = Clock()
    scope: dict = {"type": "http", ARRIVED: clock.now}
    if remaining_s is not None:
        scope["aws.context"] = LambdaContext(remaining_ms=remaining_s * 1000)
    if gateway_behind_s is not None:
        scope["aws.event"] = {"requestContext": {"requestTimeEpoch": int((clock.wall_now - gateway_behind_s) * 1000)}}
    deadline = answer_deadline(scope, wait, monotonic=clock.monotonic, wall=clock.wall)
    assert deadline - clock.now == pytest.approx(expected_left, abs=0.01)


def test_time_since_the_app_saw_the_request_counts():
    clock = Clock()
    scope = {"type": "http", ARRIVED: clock.now - 4.0}  # auth and parsing took 4 s
    assert answer_deadline(scope, 10.0, monotonic=clock.monotonic, wall=clock.wall) - clock.now == pytest.approx(6.0)


def test_a_gateway_clock_ahead_of_ours_never_moves_arrival_later():
    clock = Clock()
    scope = {"type": "http", ARRIVED: clock.now - 1.0,
             "aws.event": {"requestContext": {"requestTimeEpoch": int((clock.wall_now + 3.0) * 1000)}}}
    assert answer_deadline(scope, 10.0, monotonic=clock.monotonic, wall=clock.wall) - clock.now == pytest.approx(9.0)
