"""API: the public regional REST API and, when the stage names a VPC endpoint, a private
REST API that admits only that endpoint. Both proxy `/api/v1/…` to the API function's
`live` alias and stream `execute/stream` and `{runId}/events` from the stream function
(response streaming), so a browser app needs one base URL; function URLs cannot stream
into a VPC, so the private API is the only way in from there.

CORS: a preflight (OPTIONS) on any route reaches the API function, whose CORS middleware
answers it from CORS_ALLOW_ORIGINS (API Gateway's mock CORS cannot echo one origin of a
list); API Gateway's own error answers (authorizer, throttling 429, 5xx) carry the CORS
headers through gateway responses (docs/decisions.md).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_xray as xray
from constructs import Construct

from infra.checks import skip_checkov
from infra.config import StageConfig
from infra.constructs.data import Data
from infra.constructs.functions import Functions, FunctionSpec
from infra.constructs.orchestration import Orchestration
from infra.sizing import MEMORY_MB, XRAY_RULE_PRIORITY, XRAY_SAMPLED_PERCENT

API_ASSET = "functions/api"
BASE_PATH = ("api", "v1")
# Multipart execute bodies must reach Mangum byte for byte (base64), not re-encoded as text.
BINARY_MEDIA_TYPES = ["multipart/form-data"]
# The blocking execute waits at most EXECUTE_WAIT_SECONDS (≤ 25 s): below API Gateway's 29 s.
API_FUNCTION_TIMEOUT = Duration.seconds(29)
# A streamed response may last up to 15 minutes through a REST API (STREAM transfer mode).
STREAM_INTEGRATION_TIMEOUT = Duration.minutes(15)
# The two SSE routes, below BASE_PATH (method throttling names them this way too).
STREAM_ROUTES = (("POST", "workflow-runs/execute/stream"), ("GET", "workflow-runs/{runId}/events"))
# docs/api.md "CORS": what preflights allow and what responses expose.
CORS_ALLOW_HEADERS = "Authorization,Content-Type,Idempotency-Key,Last-Event-ID,If-Match"
CORS_EXPOSE_HEADERS = "Location,ETag,Retry-After"
CORS_ALLOW_METHODS = "GET,POST,PUT,DELETE,OPTIONS"

_OPEN_METHOD = (
    "No API Gateway authorizer: the app verifies the caller's JWT (issuer, audience, JWKS) on every "
    "route, the same code the function URL runs; preflight OPTIONS must be open by the CORS protocol."
)

_API_ACKS = {
    "AwsSolutions-APIG2": (
        "Request bodies are validated by the FastAPI app (pydantic models) behind a proxy "
        "integration; API Gateway models would duplicate and drift from them."
    ),
    "AwsSolutions-APIG4": (
        "Every route verifies a JWT (issuer, audience, JWKS) inside the app, the same code "
        "path the function URL uses; an API Gateway authorizer would duplicate it."
    ),
    "AwsSolutions-COG4": (
        "Tokens come from the stage's own OIDC issuer (cdk.json), not a Cognito user pool; the app verifies them."
    ),
}


# What the API's calls do to the runs table: read runs and pages (GetItem, Query, BatchGetItem
# after a keys-only index), create, cancel, retry and decide (PutItem and UpdateItem, in
# transactions with ConditionCheckItem).
API_RUNS_ACTIONS = ("GetItem", "Query", "BatchGetItem", "PutItem", "UpdateItem", "ConditionCheckItem")


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        data: Data,
        functions: Functions,
        orchestration: Orchestration,
        stream_function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config

        self.function = functions.function(
            self,
            "ApiFunction",
            FunctionSpec(
                asset=API_ASSET,
                handler="workflow_runs_api.handler.handler",
                description="REST API: execute (blocking), cancel, list, dashboard, get (FastAPI + Mangum)",
                service="api",
                timeout=API_FUNCTION_TIMEOUT,
                memory_size=MEMORY_MB["api"],
                environment={
                    "CORS_ALLOW_ORIGINS": ",".join(config.cors_allow_origins),
                    **orchestration.run_control_environment(config),
                },
                alias=True,
                sync_caller="API Gateway's proxy integration",
                concurrency_note=(
                    "Not reserved: the stage's API Gateway throttling bounds its rate, and a blocking execute "
                    "holds it up to 25 s, so a reservation small enough to leave the account room would "
                    "turn bursts into 5xx; the step runner, projector and stream function reserve theirs."
                ),
            ),
        )
        # API Gateway invokes the published version behind `live`.
        self.alias = functions.aliases["api"]
        self._functions = functions
        data.grant(data.runs_table, self.function, *API_RUNS_ACTIONS, query_indexes=True)
        # The blocking execute waits on the run's event log.
        data.grant(data.events_table, self.function, "Query")
        # GenerateDataKey: sealing a run's envs (never Decrypt: envs are the step runner's to
        # open); Decrypt on the tokens' own key: opening an approval's task token.
        data.envs_key.grant(self.function, "kms:GenerateDataKey")
        data.tokens_key.grant(self.function, "kms:Decrypt")
        data.fingerprint_key.grant(self.function, "kms:GenerateMac")
        orchestration.grant_run_control(self.function)
        orchestration.grant_approval_decisions(self.function)

        # Stage execution logging needs the account-level CloudWatch role of API Gateway.
        # One per account and region: kept when the stack goes, other APIs may rely on it.
        logging_role = iam.Role(
            self,
            "ApiGatewayLoggingRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonAPIGatewayPushToCloudWatchLogs")
            ],
        )
        logging_role.apply_removal_policy(RemovalPolicy.RETAIN)
        Validations.of(logging_role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                reason="The policy AWS documents for API Gateway's account-level logging role; it only "
                "writes API Gateway's own log groups.",
            )
        )
        self.account = apigw.CfnAccount(self, "ApiGatewayAccount", cloud_watch_role_arn=logging_role.role_arn)
        self.account.apply_removal_policy(RemovalPolicy.RETAIN)

        self.public_api = self._rest_api(
            "PublicApi",
            description=f"Workflow Runs API ({config.name}, public)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            policy=None,
        )
        self._route_proxy(self.public_api, self.alias)
        self._route_streams(self.public_api, self.alias, stream_function)
        self._route_viewer(self.public_api, stream_function)
        Validations.of(self.public_api).acknowledge(
            Acknowledgment(
                id="AwsSolutions-APIG3",
                reason="No WAF web ACL in this stack: stage throttling bounds abuse; attach an account "
                "WAF (Firewall Manager) to the stage where policy requires one.",
            ),
            *(Acknowledgment(id=rule, reason=reason) for rule, reason in _API_ACKS.items()),
        )

        self.private_api: apigw.RestApi | None = None
        if config.private_api_vpc_endpoint_id is not None:
            self.private_api = self._rest_api(
                "PrivateApi",
                description=f"Workflow Runs API ({config.name}, private: VPC endpoint {config.private_api_vpc_endpoint_id})",
                endpoint_types=[apigw.EndpointType.PRIVATE],
                policy=private_api_policy(config.private_api_vpc_endpoint_id),
            )
            self._route_proxy(self.private_api, self.alias)
            self._route_streams(self.private_api, self.alias, stream_function)
            Validations.of(self.private_api).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-APIG3",
                    reason="A private API: its resource policy admits only the stage's VPC endpoint, so "
                    "only callers inside that VPC reach it; the VPC's own controls front it.",
                ),
                *(Acknowledgment(id=rule, reason=reason) for rule, reason in _API_ACKS.items()),
            )

    def _rest_api(
        self,
        construct_id: str,
        *,
        description: str,
        endpoint_types: list[apigw.EndpointType],
        policy: iam.PolicyDocument | None,
    ) -> apigw.RestApi:
        access_logs = self._functions.log_group(self, f"{construct_id}AccessLogs")
        base = "/" + "/".join(BASE_PATH)
        # The SSE routes hold a stream function each for a stream's life: a stricter throttle.
        stream_throttle = apigw.MethodDeploymentOptions(
            throttling_rate_limit=self._config.stream_throttling_rate_limit,
            throttling_burst_limit=self._config.stream_throttling_burst_limit,
        )
        api = apigw.RestApi(
            self,
            construct_id,
            description=description,
            endpoint_types=endpoint_types,
            policy=policy,
            binary_media_types=BINARY_MEDIA_TYPES,
            cloud_watch_role=False,  # the account role above serves both APIs
            deploy_options=apigw.StageOptions(
                stage_name=self._config.name,
                throttling_rate_limit=self._config.throttling_rate_limit,
                throttling_burst_limit=self._config.throttling_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies carry envs: never log them
                metrics_enabled=True,
                tracing_enabled=True,
                method_options={f"{base}/{path}/{method}": stream_throttle for method, path in STREAM_ROUTES},
            ),
        )
        api.deployment_stage.node.add_dependency(self.account)
        self._sampling_rule(construct_id, api)
        skip_checkov(
            api.deployment_stage,
            "CKV_AWS_120",
            "Every answer is per tenant and per request (runs change by the second; execute starts runs): "
            "an API Gateway cache would serve one caller's answer to another or stale data.",
        )
        self._cors_gateway_responses(api)
        return api

    def _sampling_rule(self, construct_id: str, api: apigw.RestApi) -> None:
        """X-Ray's default rule records the first request each second, then 5 %: below a
        request a second (a million runs a month is 0.4 a second) that is every request. This
        stage's own rule records `XRAY_SAMPLED_PERCENT` % of requests, however few (the trace
        follows the request through Step Functions and the step runner). Errors need no trace
        to be seen: they are logged and alarmed."""
        xray.CfnSamplingRule(
            self,
            f"{construct_id}Sampling",
            sampling_rule=xray.CfnSamplingRule.SamplingRuleProperty(
                rule_name=f"wr-{self._config.name}-{construct_id}"[:32],
                priority=XRAY_RULE_PRIORITY,
                fixed_rate=XRAY_SAMPLED_PERCENT / 100,
                reservoir_size=0,
                service_name=f"{api.rest_api_name}/{self._config.name}",
                service_type="AWS::ApiGateway::Stage",
                host="*",
                http_method="*",
                url_path="*",
                resource_arn="*",
                version=1,
            ),
        )

    def _cors_gateway_responses(self, api: apigw.RestApi) -> None:
        """API Gateway's own 4xx/5xx (authorizer, throttling 429, integration failures) carry
        the CORS headers, so a browser app can read them. One listed origin is named; with
        several, the request's Origin is echoed (a gateway response cannot pick from a
        list): those answers carry no data, only the error."""
        origins = self._config.cors_allow_origins
        if not origins:
            return
        allow_origin = f"'{origins[0]}'" if len(origins) == 1 else "method.request.header.Origin"
        headers = {
            "Access-Control-Allow-Origin": allow_origin,
            "Access-Control-Allow-Headers": f"'{CORS_ALLOW_HEADERS}'",
            "Access-Control-Allow-Methods": f"'{CORS_ALLOW_METHODS}'",
            "Access-Control-Expose-Headers": f"'{CORS_EXPOSE_HEADERS}'",
            "Vary": "'Origin'",
        }
        for name, response_type in (
            ("Default4xx", apigw.ResponseType.DEFAULT_4_XX),
            ("Default5xx", apigw.ResponseType.DEFAULT_5_XX),
        ):
            api.add_gateway_response(f"Cors{name}", type=response_type, response_headers=headers)

    @staticmethod
    def _route_proxy(api: apigw.RestApi, function: lambda_.IFunction) -> None:
        integration = apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
        base = api.root.resource_for_path("/".join(BASE_PATH))
        proxy = base.add_proxy(default_integration=integration, any_method=True)
        skip_checkov(proxy.any_method, "CKV_AWS_59", _OPEN_METHOD)

    @staticmethod
    def _route_streams(api: apigw.RestApi, function: lambda_.IFunction, stream_function: lambda_.IFunction) -> None:
        """The two SSE routes stream from the stream function. API Gateway picks the most
        specific resource and never falls back to a shorter greedy one, so every resource
        on the way to them proxies the API function too, and their preflights (OPTIONS)
        go to the API function, whose CORS middleware answers them."""
        integration = apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
        stream = apigw.LambdaIntegration(
            stream_function,
            proxy=True,
            response_transfer_mode=apigw.ResponseTransferMode.STREAM,
            timeout=STREAM_INTEGRATION_TIMEOUT,
            allow_test_invoke=False,
        )
        runs = api.root.resource_for_path("/".join((*BASE_PATH, "workflow-runs")))
        execute = runs.add_resource("execute")
        execute_stream = execute.add_resource("stream")
        run = runs.add_resource("{runId}")
        events = run.add_resource("events")
        methods = [
            runs.add_method("ANY", integration),
            execute.add_method("ANY", integration),
            execute_stream.add_method("POST", stream),
            execute_stream.add_method("OPTIONS", integration),
            run.add_method("ANY", integration),
            events.add_method("GET", stream),
            events.add_method("OPTIONS", integration),
            run.add_proxy(default_integration=integration, any_method=True).any_method,
        ]
        for method in methods:
            skip_checkov(method, "CKV_AWS_59", _OPEN_METHOD)

    @staticmethod
    def _route_viewer(api: apigw.RestApi, stream_function: lambda_.IFunction) -> None:
        """The run viewer's static page (`/viewer/`), served by the stream function, on the
        public API's origin: the page calls `../api/v1/…` relative to itself and sends its
        token to its own origin only."""
        page = apigw.LambdaIntegration(stream_function, proxy=True, allow_test_invoke=False,
                                       response_transfer_mode=apigw.ResponseTransferMode.STREAM)
        viewer = api.root.add_resource("viewer")
        methods = [viewer.add_method("GET", page),
                   viewer.add_resource("{file}").add_method("GET", page)]
        for method in methods:
            skip_checkov(method, "CKV_AWS_59", "The run viewer's static page and its two files: public "
                         "content, no data; the page sends the caller's token to the API's own routes.")


def private_api_policy(vpc_endpoint_id: str) -> iam.PolicyDocument:
    """Invoke only through the one VPC endpoint (deny everything else explicitly)."""
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*"],
                conditions={"StringNotEquals": {"aws:SourceVpce": vpc_endpoint_id}},
            ),
            iam.PolicyStatement(
                effect=iam.Effect.ALLOW,
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*"],
                conditions={"StringEquals": {"aws:SourceVpce": vpc_endpoint_id}},
            ),
        ]
    )
