"""The production edge in the template: SnapStart behind `live` aliases wired to every
caller, the guards (reserved concurrency, throttles, parallelization, throttled Lambda
retried), CORS on API Gateway's own answers, and the telemetry the functions emit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.sizing import RESERVED_CONCURRENCY
from tests.infra.test_infra_template import (
    API_HANDLER,
    PROJECTOR_HANDLER,
    RECONCILER_HANDLER,
    STEP_RUNNER_HANDLER,
    STREAM_HANDLER,
    alias_of,
    env_of,
    flatten,
    function_by_handler,
    identity_statements,
    methods_of,
    rest_api,
    stream_mappings,
)

SNAPSTART_HANDLERS = (API_HANDLER, STEP_RUNNER_HANDLER, PROJECTOR_HANDLER, RECONCILER_HANDLER)
SERVICES = {
    API_HANDLER: "api",
    STEP_RUNNER_HANDLER: "step-runner",
    PROJECTOR_HANDLER: "projector",
    RECONCILER_HANDLER: "reconciler",
    STREAM_HANDLER: "stream",
}
ASL = Path(__file__).resolve().parents[2] / "infra" / "state_machine.asl.json"


# --- SnapStart and the `live` aliases -------------------------------------------------------


def test_prod_turns_snapstart_on_for_the_python_functions_but_not_the_stream_function(prod):
    for handler in SNAPSTART_HANDLERS:
        _, function = function_by_handler(prod, handler)
        assert function["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}, handler
    _, stream = function_by_handler(prod, STREAM_HANDLER)
    assert "SnapStart" not in stream["Properties"]  # uvicorn under the adapter: not snapshotted


def test_dev_has_the_same_aliases_without_snapstart(dev):
    for handler in SNAPSTART_HANDLERS:
        alias_of(dev, handler)
        assert "SnapStart" not in function_by_handler(dev, handler)[1]["Properties"]


def test_each_alias_points_at_a_published_version_of_its_function(prod):
    versions = prod.resources("AWS::Lambda::Version")
    for handler in SNAPSTART_HANDLERS:
        function_id, _ = function_by_handler(prod, handler)
        alias = prod.template["Resources"][alias_of(prod, handler)]["Properties"]
        version_ref = alias["FunctionVersion"]["Fn::GetAtt"]
        assert version_ref[1] == "Version"
        assert versions[version_ref[0]]["Properties"]["FunctionName"] == {"Ref": function_id}
        # A version the alias left goes with the next deploy (no stale SnapStart cache charge).
        assert versions[version_ref[0]]["DeletionPolicy"] == "Delete"


def test_api_gateway_may_invoke_only_the_api_alias(prod):
    api_id, _ = function_by_handler(prod, API_HANDLER)
    alias = alias_of(prod, API_HANDLER)
    by_apigw = [
        p["Properties"]
        for p in prod.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
        and flatten(p["Properties"]["FunctionName"]) in (flatten({"Ref": alias}), flatten({"Ref": api_id}))
    ]
    assert by_apigw
    assert all(p["FunctionName"] == {"Ref": alias} for p in by_apigw)


def test_the_state_machines_may_invoke_only_the_step_runner_alias(prod):
    step_runner_id, _ = function_by_handler(prod, STEP_RUNNER_HANDLER)
    alias = alias_of(prod, STEP_RUNNER_HANDLER)
    invokes = [s for s in identity_statements(prod) if "lambda:InvokeFunction" in json.dumps(s["Action"])]
    resources = [flatten(s["Resource"]) for s in invokes]
    assert resources and all(step_runner_id not in r for r in resources)
    assert any(flatten({"Ref": alias}) in r for r in resources)


# --- guards ---------------------------------------------------------------------------------


def test_prod_reserves_concurrency_for_the_runner_the_projector_the_reconciler_and_caps_the_stream(prod):
    reserved = {
        SERVICES[h]: function_by_handler(prod, h)[1]["Properties"].get("ReservedConcurrentExecutions") for h in SERVICES
    }
    assert reserved == {
        "api": None,  # throttled by the stage; a blocking execute holds it up to 25 s
        "step-runner": RESERVED_CONCURRENCY["step_runner"],
        "projector": RESERVED_CONCURRENCY["projector"],
        "reconciler": RESERVED_CONCURRENCY["reconciler"],
        "stream": RESERVED_CONCURRENCY["stream"],
    }
    # The account keeps 100 unreserved: the default quota of 1000 leaves room.
    assert sum(v for v in reserved.values() if v) + 100 <= 1000


def test_dev_reserves_less_from_its_own_settings(dev):
    _, stream = function_by_handler(dev, STREAM_HANDLER)
    assert stream["Properties"]["ReservedConcurrentExecutions"] == 20


def test_a_throttled_step_runner_is_retried_for_minutes_not_seconds():
    states = json.loads(ASL.read_text())["States"]
    for state in ("RunStep", "RecordFailure"):
        retriers = states[state]["Retry"]
        (throttled,) = [r for r in retriers if "Lambda.TooManyRequestsException" in r["ErrorEquals"]]
        assert throttled["ErrorEquals"] == ["Lambda.TooManyRequestsException"]
        # It comes before any catch-all retrier, or that one would take the error first.
        assert retriers.index(throttled) == min(
            i
            for i, r in enumerate(retriers)
            if set(r["ErrorEquals"]) & {"Lambda.TooManyRequestsException", "States.ALL"}
        )
        waits, interval = 0.0, throttled["IntervalSeconds"]
        for _ in range(throttled["MaxAttempts"]):
            waits += min(interval, throttled["MaxDelaySeconds"])
            interval *= throttled["BackoffRate"]
        assert waits >= 10 * 60, f"{state}: throttling is waited out only {waits:.0f} s"


# --- CORS on API Gateway's own answers ------------------------------------------------------


def test_gateway_errors_carry_cors_headers_for_the_listed_origin(prod):
    responses = prod.resources("AWS::ApiGateway::GatewayResponse").values()
    by_api: dict[str, set[str]] = {}
    for response in responses:
        props = response["Properties"]
        by_api.setdefault(props["RestApiId"]["Ref"], set()).add(props["ResponseType"])
        headers = props["ResponseParameters"]
        assert headers["gatewayresponse.header.Access-Control-Allow-Origin"] == "'https://app.acme-corp.net'"
        assert "Location" in headers["gatewayresponse.header.Access-Control-Expose-Headers"]
        assert "Authorization" in headers["gatewayresponse.header.Access-Control-Allow-Headers"]
        assert headers["gatewayresponse.header.Vary"] == "'Origin'"
    assert len(by_api) == 2 and all(t == {"DEFAULT_4XX", "DEFAULT_5XX"} for t in by_api.values())


def test_without_cors_origins_there_are_no_cors_headers_anywhere(dev):
    assert dev.resources("AWS::ApiGateway::GatewayResponse") == {}
    assert all("Cors" not in u["Properties"] for u in dev.resources("AWS::Lambda::Url").values())
    for handler in (API_HANDLER, STREAM_HANDLER):
        assert env_of(dev, handler)["CORS_ALLOW_ORIGINS"] == ""


def test_the_http_functions_and_the_function_url_know_the_allowed_origins(prod):
    for handler in (API_HANDLER, STREAM_HANDLER):
        assert env_of(prod, handler)["CORS_ALLOW_ORIGINS"] == "https://app.acme-corp.net"
    (url,) = prod.resources("AWS::Lambda::Url").values()
    assert url["Properties"]["Cors"]["AllowOrigins"] == ["https://app.acme-corp.net"]
    assert "if-match" in url["Properties"]["Cors"]["AllowHeaders"]


# --- telemetry ------------------------------------------------------------------------------


def test_every_function_names_its_service_and_writes_metrics_as_emf_with_no_cloudwatch_grant(prod):
    for handler, service in SERVICES.items():
        env = env_of(prod, handler)
        assert env["POWERTOOLS_SERVICE_NAME"] == service
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "WorkflowRuns"
    # Metrics are EMF log lines: no function calls PutMetricData, none may.
    assert not [s for s in identity_statements(prod) if "cloudwatch:PutMetricData" in str(s["Action"])]


def test_alarms_watch_the_functions_metrics(prod):
    alarms = [a["Properties"] for a in prod.resources("AWS::CloudWatch::Alarm").values()]
    simple = {(a.get("Namespace"), a.get("MetricName")): a for a in alarms if "MetricName" in a}
    assert simple[("WorkflowRuns", "ProjectionLag")]["Dimensions"] == [{"Name": "service", "Value": "projector"}]
    assert simple[("WorkflowRuns", "StreamsRefused")]["Dimensions"] == [{"Name": "service", "Value": "stream"}]
    tenant_streams = simple[("WorkflowRuns", "OpenStreams")]  # the busiest tenant's, against its own cap
    assert tenant_streams["Statistic"] == "Maximum"
    _, stream = function_by_handler(prod, STREAM_HANDLER)
    per_tenant = int(stream["Properties"]["Environment"]["Variables"]["STREAM_MAX_PER_TENANT"])
    assert 0 < tenant_streams["Threshold"] < per_tenant
    all_streams = simple[("AWS/Lambda", "ConcurrentExecutions")]  # every tenant's, against the function's cap
    assert all_streams["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_by_handler(prod, STREAM_HANDLER)[0]}}]
    assert 0 < all_streams["Threshold"] < RESERVED_CONCURRENCY["stream"]
    (failed,) = [a for a in alarms if "Metrics" in a]  # the one metric-math alarm
    summed = [m["MetricStat"]["Metric"] for m in failed["Metrics"] if "MetricStat" in m]
    assert {m["MetricName"] for m in summed} == {"RunsEnded"}
    dims = [{d["Name"]: d["Value"] for d in m["Dimensions"]} for m in summed]
    assert all(d["Status"] == "failed" for d in dims)
    assert {d["RunClass"] for d in dims} == {"standard", "express"}


def test_the_dashboard_is_named_by_stage_and_region_and_shows_the_new_metrics(prod):
    (dashboard,) = prod.resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "workflow-runs-prod-eu-west-1"
    body = flatten(dashboard["Properties"]["DashboardBody"])
    for metric in ("RunsStarted", "RunsEnded", "StepDuration", "OpenStreams", "StreamsRefused", "ProjectionLag"):
        assert metric in body, metric


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_the_projector_mapping_processes_batches_of_a_shard_in_parallel(stage, request):
    (mapping,) = stream_mappings(request.getfixturevalue(stage))
    assert mapping["Properties"]["ParallelizationFactor"] > 1


def test_with_several_origins_gateway_errors_echo_the_requests_origin(tmp_path, placeholder_deps):
    from tests.infra.conftest import synthesize

    origins = ["https://app.acme-corp.net", "https://admin.acme-corp.net"]
    synth = synthesize("dev", tmp_path, placeholder_deps, dev={"corsAllowOrigins": origins})
    responses = list(synth.resources("AWS::ApiGateway::GatewayResponse").values())
    assert len(responses) == 2
    for response in responses:
        headers = response["Properties"]["ResponseParameters"]
        assert headers["gatewayresponse.header.Access-Control-Allow-Origin"] == "method.request.header.Origin"
    assert env_of(synth, API_HANDLER)["CORS_ALLOW_ORIGINS"] == ",".join(origins)


# --- the run viewer and clean stream ends ---------------------------------------------------


def test_the_public_api_serves_the_run_viewer_from_the_stream_function(prod):
    rest_api_id, _ = rest_api(prod, "REGIONAL")
    stream_id, _ = function_by_handler(prod, STREAM_HANDLER)
    methods = methods_of(prod, rest_api_id)
    for key in [("GET", "/viewer"), ("GET", "/viewer/{file}")]:
        integration = methods[key]["Integration"]
        assert integration["Type"] == "AWS_PROXY" and stream_id in flatten(integration["Uri"])
    private_id, _ = rest_api(prod, "PRIVATE")
    assert not any(path.startswith("/viewer") for _, path in methods_of(prod, private_id))


def test_a_stream_ends_cleanly_before_its_function_times_out(prod):
    _, stream = function_by_handler(prod, STREAM_HANDLER)
    max_seconds = int(stream["Properties"]["Environment"]["Variables"]["STREAM_MAX_SECONDS"])
    assert 0 < max_seconds <= stream["Properties"]["Timeout"] - 30
