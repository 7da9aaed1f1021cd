"""The Lambda init phase of each Python function (`telemetry.lambda_init` + the entry
module's `prime`), in a fresh interpreter with Lambda's environment: it sends nothing (the
DynamoDB endpoint is a closed port: a request that left would fail the import), writes
nothing to stdout (the rehearsals' logs and metrics go nowhere: in Lambda, stdout is the
log and EMF would be published), and leaves Powertools counting the first real invocation
as the cold start; the API's first invocation then works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = {
    "api": "workflow_runs_api.handler",
    "step-runner": "workflow_runs_step_runner.handler",
    "reconciler": "workflow_runs_step_runner.reconciler",
    "projector": "workflow_runs_stream.projector",
}
SCRIPT = """
import json, sys, importlib
module = importlib.import_module(sys.argv[1])
from aws_lambda_powertools.logging import logger as powertools_logger
from aws_lambda_powertools.metrics.provider import cold_start
from workflow_runs import telemetry
flags = {"registered": len(telemetry._registered), "logger_cold_start": powertools_logger.is_cold_start,
         "metrics_cold_start": cold_start.is_cold_start}
if sys.argv[1] == "workflow_runs_api.handler":
    event = {"resource": "/{proxy+}", "path": "/health", "httpMethod": "GET", "headers": {"Host": "x"},
             "multiValueHeaders": {"Host": ["x"]}, "queryStringParameters": None,
             "multiValueQueryStringParameters": None, "pathParameters": {"proxy": "health"}, "stageVariables": None,
             "body": None, "isBase64Encoded": False,
             "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": "GET", "path": "/health", "stage": "prod",
                                "requestId": "r1", "identity": {"sourceIp": "10.0.0.1"}}}
    flags["health"] = module.handler(event, None)["statusCode"]
    flags["logger_cold_start_after_it"] = powertools_logger.is_cold_start
sys.stderr.write("FLAGS " + json.dumps(flags) + "\\n")
"""


def lambda_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": "init-phase-test", "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
        "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
        "DYNAMODB_ENDPOINT_URL": "http://127.0.0.1:9", "RUNS_TABLE": "runs", "EVENTS_TABLE": "events",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:wr",
        "EXPRESS_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:wr-express",
        "PRIVATE_API_IDS": "priv1", "LOCAL_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "POWERTOOLS_TRACE_DISABLED": "true",
    })
    return env


@pytest.mark.parametrize("function", sorted(ENTRIES))
def test_the_init_phase_sends_nothing_prints_nothing_and_leaves_the_cold_start_to_the_first_invocation(
        function: str):
    done = subprocess.run([sys.executable, "-c", SCRIPT, ENTRIES[function]], cwd=ROOT, env=lambda_environment(),
                          capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr[-3000:]
    flags = json.loads(next(line for line in done.stderr.splitlines() if line.startswith("FLAGS "))[len("FLAGS "):])
    assert flags["registered"] == 1, "the SnapStart hooks are registered"
    assert flags["logger_cold_start"] is True and flags["metrics_cold_start"] is True
    assert done.stdout == ""
    if function == "api":  # the first invocation works, and it is the one counted as the cold start
        assert flags["health"] == 200 and flags["logger_cold_start_after_it"] is False
