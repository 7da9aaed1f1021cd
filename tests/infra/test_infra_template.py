"""Template assertions: the properties the design depends on, read from the synthesized
CloudFormation (prod with a private API, dev without)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match
from workflow_runs import keys
from workflow_runs.settings import Settings

STREAM_HANDLER = "run.sh"
PROJECTOR_HANDLER = "workflow_runs_stream.projector.handler"
API_HANDLER = "workflow_runs_api.handler.handler"
STEP_RUNNER_HANDLER = "workflow_runs_step_runner.handler.handler"
RECONCILER_HANDLER = "workflow_runs_step_runner.reconciler.handler"
ALL_HANDLERS = {STREAM_HANDLER, PROJECTOR_HANDLER, API_HANDLER, STEP_RUNNER_HANDLER, RECONCILER_HANDLER}


def function_by_handler(synth, handler: str) -> tuple[str, dict[str, Any]]:
    matches = [
        (k, r) for k, r in synth.resources("AWS::Lambda::Function").items() if r["Properties"]["Handler"] == handler
    ]
    assert len(matches) == 1, f"expected one function with handler {handler}, found {len(matches)}"
    return matches[0]


def alias_of(synth, handler: str) -> str:
    """The logical id of the `live` alias of the function with `handler`."""
    function_id, _ = function_by_handler(synth, handler)
    aliases = [
        k
        for k, r in synth.resources("AWS::Lambda::Alias").items()
        if r["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    assert len(aliases) == 1, f"expected one alias of {handler}, found {len(aliases)}"
    assert synth.template["Resources"][aliases[0]]["Properties"]["Name"] == "live"
    return aliases[0]


def env_of(synth, handler: str) -> dict[str, Any]:
    return function_by_handler(synth, handler)[1]["Properties"]["Environment"]["Variables"]


def flatten(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def rest_api(synth, endpoint_type: str) -> tuple[str, dict[str, Any]]:
    apis = [
        (k, r)
        for k, r in synth.resources("AWS::ApiGateway::RestApi").items()
        if r["Properties"]["EndpointConfiguration"]["Types"] == [endpoint_type]
    ]
    assert len(apis) == 1
    return apis[0]


def resource_path(synth, resource_id: str) -> str:
    """/api/v1/… of an AWS::ApiGateway::Resource, walking its ParentId chain."""
    parts = []
    while True:
        resource = synth.template["Resources"][resource_id]["Properties"]
        parts.append(resource["PathPart"])
        parent = resource["ParentId"]
        if "Ref" in parent:
            resource_id = parent["Ref"]
        else:  # Fn::GetAtt [RestApi, RootResourceId]
            return "/" + "/".join(reversed(parts))


def methods_of(synth, api_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for method in synth.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        if props["RestApiId"] != {"Ref": api_id}:
            continue
        found[(props["HttpMethod"], resource_path(synth, props["ResourceId"]["Ref"]))] = props
    return found


# --- stream: the SSE function, its URL and the adapter ---------------------------------


def test_stream_function_runs_under_the_web_adapter(prod):
    _, function = function_by_handler(prod, STREAM_HANDLER)
    props = function["Properties"]
    env = props["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/health"
    assert env["PORT"] == "8080"
    assert props["Architectures"] == ["arm64"]
    adapter_layers = [layer for layer in props["Layers"] if "LambdaAdapterLayerArm64" in flatten(layer)]
    assert len(adapter_layers) == 1
    assert ":753240598075:layer:LambdaAdapterLayerArm64:" in flatten(adapter_layers[0])


def test_stream_function_url_streams_responses_without_iam_auth_and_with_cors(prod):
    stream_id, _ = function_by_handler(prod, STREAM_HANDLER)
    prod.assertions().has_resource_properties(
        "AWS::Lambda::Url",
        {
            "InvokeMode": "RESPONSE_STREAM",
            "AuthType": "NONE",
            "TargetFunctionArn": {"Fn::GetAtt": [stream_id, "Arn"]},
            "Cors": Match.object_like({"AllowMethods": ["GET", "POST"], "AllowOrigins": Match.any_value()}),
        },
    )


# --- data ------------------------------------------------------------------------------


def tables(synth) -> tuple[dict[str, Any], dict[str, Any]]:
    found = synth.resources("AWS::DynamoDB::Table").values()
    runs = [t for t in found if "GlobalSecondaryIndexes" in t["Properties"]]
    events = [t for t in found if "GlobalSecondaryIndexes" not in t["Properties"]]
    assert len(runs) == 1 and len(events) == 1
    return runs[0], events[0]


def test_runs_table_streams_both_images_and_the_event_log_has_no_stream(prod):
    runs, events = tables(prod)
    assert runs["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert "StreamSpecification" not in events["Properties"]


def test_runs_table_matches_the_store_key_layout(prod):
    runs, _ = tables(prod)
    spec = keys.runs_table_spec("runs")
    props = runs["Properties"]
    assert props["KeySchema"] == spec["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        spec["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    def shape(g: dict) -> tuple:
        projection = g["Projection"]
        return g["KeySchema"], projection["ProjectionType"], sorted(projection.get("NonKeyAttributes", []))

    assert {g["IndexName"]: shape(g) for g in props["GlobalSecondaryIndexes"]} == {
        g["IndexName"]: shape(g) for g in spec["GlobalSecondaryIndexes"]
    }


def test_events_table_matches_the_store_key_layout(prod):
    _, events = tables(prod)
    spec = keys.events_table_spec("events")
    assert events["Properties"]["KeySchema"] == spec["KeySchema"]
    assert events["Properties"]["AttributeDefinitions"] == spec["AttributeDefinitions"]


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_tables_expire_items_recover_in_time_and_use_a_customer_managed_key(stage, request):
    synth = request.getfixturevalue(stage)
    for table in tables(synth):
        props = table["Properties"]
        assert props["TimeToLiveSpecification"] == {"AttributeName": keys.TTL_ATTRIBUTE, "Enabled": True}
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert props["SSESpecification"]["SSEType"] == "KMS"
        key_ref = props["SSESpecification"]["KMSMasterKeyId"]["Fn::GetAtt"][0]
        assert synth.template["Resources"][key_ref]["Type"] == "AWS::KMS::Key"


def test_prod_tables_are_retained_and_protected_from_deletion(prod):
    for table in tables(prod):
        assert table["DeletionPolicy"] == "Retain"
        assert table["Properties"]["DeletionProtectionEnabled"] is True


def test_dev_tables_are_disposable(dev):
    for table in tables(dev):
        assert table["DeletionPolicy"] == "Delete"
        assert table["Properties"].get("DeletionProtectionEnabled") in (None, False)


# --- projector: the event source mapping -----------------------------------------------


def stream_mappings(synth) -> list[dict[str, Any]]:
    """The event source mappings that read a DynamoDB stream (the others read a queue)."""
    return [m for m in synth.resources("AWS::Lambda::EventSourceMapping").values()
            if "StreamArn" in flatten(m["Properties"]["EventSourceArn"])]


def test_projector_reads_the_runs_stream_with_partial_batch_responses_and_an_on_failure_queue(prod):
    projector_id = alias_of(prod, PROJECTOR_HANDLER)  # the mapping invokes the `live` alias
    mappings = stream_mappings(prod)
    assert len(mappings) == 1
    props = mappings[0]["Properties"]
    runs_id = next(
        k for k, t in prod.resources("AWS::DynamoDB::Table").items() if "StreamSpecification" in t["Properties"]
    )

    # "<function name>:live", the name taken from the alias: the alias, never $LATEST.
    assert props["FunctionName"] == {
        "Fn::Join": ["", [{"Fn::Select": [6, {"Fn::Split": [":", {"Ref": projector_id}]}]}, ":live"]]
    }
    assert props["EventSourceArn"] == {"Fn::GetAtt": [runs_id, "StreamArn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    assert 0 < props["MaximumRetryAttempts"] <= 10
    assert 0 < props["MaximumRecordAgeInSeconds"] <= 24 * 3600
    assert 1 <= props["BatchSize"] <= 1000
    assert 1 < props["ParallelizationFactor"] <= 10
    # Tuned for latency: no batching window (records are projected as soon as they are polled)
    assert props["MaximumBatchingWindowInSeconds"] == 0
    destination = props["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"]
    assert destination[1] == "Arn"
    assert prod.template["Resources"][destination[0]]["Type"] == "AWS::SQS::Queue"


def test_the_reconciler_consumes_the_projectors_on_failure_queue_and_may_read_the_stream_back(prod):
    (stream_mapping,) = stream_mappings(prod)
    queue_id = stream_mapping["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    (consumer,) = [m["Properties"] for m in prod.resources("AWS::Lambda::EventSourceMapping").values()
                   if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}]
    reconciler_alias = alias_of(prod, RECONCILER_HANDLER)
    assert reconciler_alias in flatten(consumer["FunctionName"])  # the `live` alias
    assert consumer["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    queue = prod.template["Resources"][queue_id]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert 1 < redrive["maxReceiveCount"] <= 10
    repair_dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert prod.template["Resources"][repair_dlq]["Type"] == "AWS::SQS::Queue"
    _, reconciler = function_by_handler(prod, RECONCILER_HANDLER)
    assert queue["VisibilityTimeout"] >= 6 * reconciler["Properties"]["Timeout"]

    runs_id = next(
        k for k, t in prod.resources("AWS::DynamoDB::Table").items() if "StreamSpecification" in t["Properties"]
    )
    role = reconciler["Properties"]["Role"]["Fn::GetAtt"][0]
    granted: dict[str, list] = {}
    for policy in prod.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                for action in actions:
                    granted.setdefault(action, []).append(statement["Resource"])
    stream_arn = {"Fn::GetAtt": [runs_id, "StreamArn"]}
    for action in ("dynamodb:GetShardIterator", "dynamodb:GetRecords"):
        assert stream_arn in granted[action], action
    # The message names the stream and the shard: no listing, no describing.
    assert "dynamodb:ListStreams" not in granted and "dynamodb:DescribeStream" not in granted
    assert granted["sqs:ReceiveMessage"] == [{"Fn::GetAtt": [queue_id, "Arn"]}]
    assert granted["sqs:DeleteMessage"] == [{"Fn::GetAtt": [queue_id, "Arn"]}]


def test_projector_filter_admits_run_partition_inserts_and_updates_and_run_head_deletions_only(prod):
    (mapping,) = stream_mappings(prod)
    changes, removals = [json.loads(f["Pattern"]) for f in mapping["Properties"]["FilterCriteria"]["Filters"]]
    assert changes == {
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {"Keys": {keys.PK: {"S": [{"prefix": keys.run_pk("")}]}}},
    }
    # An expired run's head (retention): its counters move.
    assert removals == {
        "eventName": ["REMOVE"],
        "dynamodb": {"Keys": {keys.PK: {"S": [{"prefix": keys.run_pk("")}]}, keys.SK: {"S": [keys.RUN_SK]}}},
    }


# --- APIs --------------------------------------------------------------------------------


def test_private_api_admits_only_the_configured_vpc_endpoint(prod, vpc_endpoint_id):
    _, api = rest_api(prod, "PRIVATE")
    statements = api["Properties"]["Policy"]["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert allows and all(s["Condition"] == {"StringEquals": {"aws:SourceVpce": vpc_endpoint_id}} for s in allows)
    assert denies == [
        {
            "Action": "execute-api:Invoke",
            "Condition": {"StringNotEquals": {"aws:SourceVpce": vpc_endpoint_id}},
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Resource": "execute-api:/*",
        }
    ]


@pytest.mark.parametrize("endpoint_type", ["PRIVATE", "REGIONAL"])
def test_both_apis_stream_execute_stream_and_events_from_the_stream_function(prod, endpoint_type):
    """One origin: the public API streams too, not only the private one."""
    rest_api_id, _ = rest_api(prod, endpoint_type)
    stream_id, _ = function_by_handler(prod, STREAM_HANDLER)
    methods = methods_of(prod, rest_api_id)
    for key in [("POST", "/api/v1/workflow-runs/execute/stream"), ("GET", "/api/v1/workflow-runs/{runId}/events")]:
        integration = methods[key]["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert integration["ResponseTransferMode"] == "STREAM"
        uri = flatten(integration["Uri"])
        assert "response-streaming-invocations" in uri and stream_id in uri


@pytest.mark.parametrize("endpoint_type", ["PRIVATE", "REGIONAL"])
def test_both_apis_proxy_every_other_path_and_every_preflight_to_the_api_functions_alias(prod, endpoint_type):
    rest_api_id, _ = rest_api(prod, endpoint_type)
    api_id, _ = function_by_handler(prod, API_HANDLER)
    alias_id = alias_of(prod, API_HANDLER)
    methods = methods_of(prod, rest_api_id)
    preflights = [("OPTIONS", "/api/v1/workflow-runs/execute/stream"), ("OPTIONS", "/api/v1/workflow-runs/{runId}/events")]
    for key in preflights:  # the app's CORS middleware answers them, not a mock
        integration = methods[key]["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert alias_id in flatten(integration["Uri"])
    assert set(methods) == {
        *preflights,
        ("POST", "/api/v1/workflow-runs/execute/stream"),
        ("GET", "/api/v1/workflow-runs/{runId}/events"),
        *(("ANY", p) for p in [
            "/api/v1/{proxy+}",
            "/api/v1/workflow-runs",
            "/api/v1/workflow-runs/execute",
            "/api/v1/workflow-runs/{runId}",
            "/api/v1/workflow-runs/{runId}/{proxy+}",
        ]),
        # the run viewer's page, on the public API only (tests/infra/test_infra_edge.py)
        *([("GET", "/viewer"), ("GET", "/viewer/{file}")] if endpoint_type == "REGIONAL" else []),
    }
    for path in [
        "/api/v1/{proxy+}",
        "/api/v1/workflow-runs",
        "/api/v1/workflow-runs/execute",
        "/api/v1/workflow-runs/{runId}",
        "/api/v1/workflow-runs/{runId}/{proxy+}",
    ]:
        integration = methods[("ANY", path)]["Integration"]
        assert integration.get("ResponseTransferMode", "BUFFERED") == "BUFFERED"
        uri = flatten(integration["Uri"])
        assert alias_id in uri and f'"{api_id}"' not in uri  # the alias, never $LATEST


def test_each_api_stage_has_its_own_xray_sampling_rule_without_a_reservoir(prod):
    # The default rule's reservoir (the first request each second) records every request of
    # a stage that serves fewer than one a second; the stage's rule records a fixed share.
    rules = [r["Properties"]["SamplingRule"] for r in prod.resources("AWS::XRay::SamplingRule").values()]
    apis = prod.resources("AWS::ApiGateway::RestApi")
    assert len(rules) == len(apis) >= 1
    for rule in rules:
        assert rule["ReservoirSize"] == 0 and 0 < rule["FixedRate"] <= 0.05
        assert rule["ServiceType"] == "AWS::ApiGateway::Stage" and rule["Priority"] < 10000
        assert rule["ServiceName"].endswith("/prod") and len(rule["RuleName"]) <= 32
    assert {r["ServiceName"].split("/")[0] for r in rules} == {a["Properties"]["Name"] for a in apis.values()}


def test_public_api_takes_multipart_as_binary(prod):
    _, api = rest_api(prod, "REGIONAL")
    assert "multipart/form-data" in api["Properties"]["BinaryMediaTypes"]


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_api_stages_throttle_and_write_access_logs(stage, request):
    synth = request.getfixturevalue(stage)
    stages = synth.resources("AWS::ApiGateway::Stage").values()
    assert stages
    for api_stage in stages:
        props = api_stage["Properties"]
        assert props["StageName"] == stage
        assert "DestinationArn" in props["AccessLogSetting"] and props["AccessLogSetting"]["Format"]
        by_path = {(m["ResourcePath"], m["HttpMethod"]): m for m in props["MethodSettings"]}
        settings = by_path[("/*", "*")]
        assert settings["ThrottlingRateLimit"] > 0 and settings["ThrottlingBurstLimit"] > 0
        assert settings["DataTraceEnabled"] is False
        # The SSE routes hold a function each for a stream's life: throttled harder.
        for key in [("/~1api~1v1~1workflow-runs~1execute~1stream", "POST"),
                    ("/~1api~1v1~1workflow-runs~1{runId}~1events", "GET")]:
            assert 0 < by_path[key]["ThrottlingRateLimit"] < settings["ThrottlingRateLimit"]
            assert 0 < by_path[key]["ThrottlingBurstLimit"] < settings["ThrottlingBurstLimit"]
        assert props["TracingEnabled"] is True


def test_dev_without_a_vpc_endpoint_has_no_private_api(dev):
    assert [
        r["Properties"]["EndpointConfiguration"]["Types"] for r in dev.resources("AWS::ApiGateway::RestApi").values()
    ] == [["REGIONAL"]]
    for handler in (API_HANDLER, STREAM_HANDLER):
        assert "PRIVATE_API_IDS" not in env_of(dev, handler)


def test_http_functions_learn_the_private_api_id(prod):
    private_id, _ = rest_api(prod, "PRIVATE")
    for handler in (API_HANDLER, STREAM_HANDLER):
        assert env_of(prod, handler)["PRIVATE_API_IDS"] == {"Ref": private_id}


# --- functions -----------------------------------------------------------------------------


def test_every_function_shares_the_defaults(prod):
    functions = prod.resources("AWS::Lambda::Function").values()
    assert {f["Properties"]["Handler"] for f in functions} == ALL_HANDLERS
    for function in functions:
        props = function["Properties"]
        assert props["Runtime"].startswith("python3.") and int(props["Runtime"].split(".")[1]) >= 12
        assert props["Architectures"] == ["arm64"]
        # The projector continues a trace only when its caller sampled one (stream records never
        # carry one): no trace per stream record, at Lambda's fixed sampling.
        mode = "PassThrough" if props["Handler"] == PROJECTOR_HANDLER else "Active"
        assert props["TracingConfig"] == {"Mode": mode}
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        assert "LogGroup" in props["LoggingConfig"]
        env = props["Environment"]["Variables"]
        assert env["POWERTOOLS_SERVICE_NAME"] in {"api", "step-runner", "projector", "reconciler", "stream"}
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "WorkflowRuns"
        assert len(props["Layers"]) >= 2  # the domain and the dependencies


def test_every_function_environment_is_a_valid_settings(prod):
    """The env names are Settings fields (upper-cased) and Settings.from_env accepts them."""
    platform = {"AWS_LAMBDA_EXEC_WRAPPER", "AWS_LWA_INVOKE_MODE", "AWS_LWA_READINESS_CHECK_PATH", "PORT"}
    fields = {name.upper() for name in Settings.model_fields}
    for function in prod.resources("AWS::Lambda::Function").values():
        env = function["Properties"]["Environment"]["Variables"]
        ours = {k for k in env if k not in platform and not k.startswith("POWERTOOLS_")}
        assert ours <= fields, f"not Settings fields: {sorted(ours - fields)}"
        resolved = {k: (v if isinstance(v, str) else "resolved-at-deploy") for k, v in env.items()}
        settings = Settings.from_env(resolved)
        assert settings.execute_wait_seconds <= 25
        assert settings.llm_provider == "bedrock"


def machine_ids(synth) -> dict[str, str]:
    """{STANDARD | EXPRESS: logical id}"""
    return {r["Properties"]["StateMachineType"]: k for k, r in synth.resources("AWS::StepFunctions::StateMachine").items()}


def test_functions_that_start_runs_know_both_state_machines_and_the_run_class_setting(prod):
    machines = machine_ids(prod)
    assert sorted(machines) == ["EXPRESS", "STANDARD"]
    for handler in (API_HANDLER, STREAM_HANDLER, RECONCILER_HANDLER):
        assert env_of(prod, handler)["STATE_MACHINE_ARN"] == {"Ref": machines["STANDARD"]}
    for handler in (API_HANDLER, STREAM_HANDLER):
        assert env_of(prod, handler)["EXPRESS_STATE_MACHINE_ARN"] == {"Ref": machines["EXPRESS"]}
        assert env_of(prod, handler)["ORCHESTRATION"] == "auto"


# --- orchestration -------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "level"), [("STANDARD", "ALL"), ("EXPRESS", "ERROR")])
def test_both_state_machines_are_traced_and_log_without_execution_data(prod, kind: str, level: str):
    prod.assertions().has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": kind,
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"IncludeExecutionData": False, "Level": level}),
        },
    )



def test_reconciler_hears_failed_timed_out_and_aborted_executions_and_a_sweep(prod):
    reconciler_id = alias_of(prod, RECONCILER_HANDLER)  # the `live` alias
    machine_id = machine_ids(prod)["STANDARD"]  # Express sends no status events: the sweep settles its runs
    rules = [r["Properties"] for r in prod.resources("AWS::Events::Rule").values()]
    assert all(any(t["Arn"] == {"Ref": reconciler_id} for t in r["Targets"]) for r in rules)
    (pattern,) = [r["EventPattern"] for r in rules if "EventPattern" in r]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": machine_id}]
    assert [r["ScheduleExpression"] for r in rules if "ScheduleExpression" in r] == ["rate(5 minutes)"]


# --- IAM -----------------------------------------------------------------------------------


def identity_statements(synth):
    for resource in synth.template["Resources"].values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield from resource["Properties"]["PolicyDocument"]["Statement"]
        elif resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                yield from policy["PolicyDocument"]["Statement"]


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_no_dynamodb_or_kms_action_is_allowed_on_every_resource(stage, request):
    synth = request.getfixturevalue(stage)
    checked = 0
    for statement in identity_statements(synth):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if not any(a.startswith(("dynamodb:", "kms:")) for a in actions):
            continue
        checked += 1
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        # ListStreams supports no resource-level permission: "*" is the only resource it matches.
        if "*" in resources:
            assert {a for a in actions if a.startswith(("dynamodb:", "kms:"))} == {"dynamodb:ListStreams"}, \
                f"{actions} allowed on *"
    assert checked >= 5  # every function touches a table


def key_actions(synth, key_description: str, handler: str) -> set[str]:
    """The actions the role of the function with `handler` may take on the KMS key whose
    description contains `key_description`."""
    (key_id,) = [k for k, r in synth.resources("AWS::KMS::Key").items()
                 if key_description in r["Properties"]["Description"]]
    role = function_by_handler(synth, handler)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    found: set[str] = set()
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}:
                actions = statement["Action"]
                found |= set(actions if isinstance(actions, list) else [actions])
    return found


def test_the_step_runner_may_only_open_envs_and_seal_tokens_and_the_http_functions_seal_envs(prod):
    assert key_actions(prod, "seals the envs", STEP_RUNNER_HANDLER) == {"kms:Decrypt"}
    # The internet-facing functions seal envs and can never open them.
    assert key_actions(prod, "seals the envs", API_HANDLER) == {"kms:GenerateDataKey"}
    assert key_actions(prod, "seals the envs", STREAM_HANDLER) == {"kms:GenerateDataKey"}
    assert key_actions(prod, "seals the envs", PROJECTOR_HANDLER) == set()
    # Approval task tokens have a key of their own: the step runner seals, the API opens.
    assert key_actions(prod, "approval task tokens", STEP_RUNNER_HANDLER) == {"kms:GenerateDataKey"}
    assert key_actions(prod, "approval task tokens", API_HANDLER) == {"kms:Decrypt"}
    assert key_actions(prod, "approval task tokens", STREAM_HANDLER) == set()
    for handler in (API_HANDLER, STEP_RUNNER_HANDLER):
        assert "TOKENS_KMS_KEY_ID" in env_of(prod, handler)


def test_idempotency_fingerprints_derive_from_an_hmac_key_only_the_http_functions_may_use(prod):
    (key,) = [r for r in prod.resources("AWS::KMS::Key").values()
              if "idempotency fingerprints" in r["Properties"]["Description"]]
    assert key["Properties"]["KeySpec"] == "HMAC_256" and key["Properties"]["KeyUsage"] == "GENERATE_VERIFY_MAC"
    assert key_actions(prod, "idempotency fingerprints", API_HANDLER) == {"kms:GenerateMac"}
    assert key_actions(prod, "idempotency fingerprints", STREAM_HANDLER) == {"kms:GenerateMac"}
    assert key_actions(prod, "idempotency fingerprints", STEP_RUNNER_HANDLER) == set()
    assert key_actions(prod, "idempotency fingerprints", PROJECTOR_HANDLER) == set()
    for handler in (API_HANDLER, STREAM_HANDLER):
        assert "FINGERPRINT_KMS_KEY_ID" in env_of(prod, handler)


# --- observability -------------------------------------------------------------------------


def test_alarms_watch_dead_letters_executions_5xx_iterator_age_and_throttles(prod):
    metrics = {
        (a["Properties"].get("Namespace"), a["Properties"].get("MetricName"))
        for a in prod.resources("AWS::CloudWatch::Alarm").values()
    }
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics
    assert ("AWS/States", "ExecutionsFailed") in metrics
    assert ("AWS/States", "ExecutionsTimedOut") in metrics
    watched = [flatten(a["Properties"].get("Dimensions")) for a in prod.resources("AWS::CloudWatch::Alarm").values()
               if a["Properties"].get("MetricName") in ("ExecutionsFailed", "ExecutionsTimedOut")]
    for machine_id in machine_ids(prod).values():  # both run classes
        assert sum(machine_id in d for d in watched) == 2
    assert ("AWS/ApiGateway", "5XXError") in metrics
    assert ("AWS/Lambda", "IteratorAge") in metrics
    assert ("AWS/Lambda", "Throttles") in metrics
    for alarm in prod.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"], "every alarm notifies the alarm topic"
    assert len(prod.resources("AWS::CloudWatch::Dashboard")) == 1


def test_the_stream_asset_ships_an_executable_run_sh_that_starts_uvicorn(prod):
    """The adapter execs the handler script; the zip keeps the file mode of the staged copy."""
    import os
    import stat

    code = function_by_handler(prod, STREAM_HANDLER)[1]["Properties"]["Code"]
    asset_hash = code["S3Key"].removesuffix(".zip")
    script = prod.outdir / f"asset.{asset_hash}" / STREAM_HANDLER
    assert script.is_file(), "functions/stream/run.sh is missing"
    assert os.stat(script).st_mode & stat.S_IXUSR, "run.sh must be executable (make build sets the bit)"
    assert "uvicorn" in script.read_text()


def test_function_assets_carry_no_caches(prod):
    for function in prod.resources("AWS::Lambda::Function").values():
        asset_hash = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
        assert not list((prod.outdir / f"asset.{asset_hash}").rglob("__pycache__"))


def test_only_the_api_function_may_stop_executions(prod):
    def state_actions(handler: str) -> set[str]:
        role = function_by_handler(prod, handler)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
        found: set[str] = set()
        for policy in prod.resources("AWS::IAM::Policy").values():
            if {"Ref": role} in policy["Properties"]["Roles"]:
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                    found |= {a for a in actions if a.startswith("states:")}
        return found

    # The stream function starts runs; only the API cancels them (nobody but the reconciler
    # describes an execution), and it answers approval steps' task tokens.
    assert state_actions(STREAM_HANDLER) == {"states:StartExecution"}
    assert state_actions(API_HANDLER) == {"states:StartExecution", "states:StopExecution",
                                          "states:SendTaskSuccess", "states:SendTaskFailure"}
    assert state_actions(RECONCILER_HANDLER) == {"states:DescribeExecution"}
    assert state_actions(STEP_RUNNER_HANDLER) == set()
    assert state_actions(PROJECTOR_HANDLER) == set()
