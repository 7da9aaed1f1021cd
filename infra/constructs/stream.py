"""Stream: the SSE app under the Lambda Web Adapter, served through the public REST API
(the one origin of a browser app, api.py) and through a streaming function URL, and the
projector — the DynamoDB stream's one reader — that turns run changes into events.

The stream function's reserved concurrency is the cap on streams open at once, through the
API and the function URL together: the function URL has no concurrency setting of its own,
and the stream function serves nothing else, so that cap is the URL's limit too, and no
crowd of viewers can take the step runner's or the projector's share.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Aws, Duration, Stack, Token, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct
from workflow_runs import keys

from infra.checks import skip_checkov
from infra.config import StageConfig
from infra.constructs.data import Data
from infra.constructs.functions import Functions, FunctionSpec
from infra.constructs.orchestration import Orchestration
from infra.constructs.queues import failure_queue
from infra.sizing import MEMORY_MB, PROJECTOR_PARALLELIZATION_FACTOR, RESERVED_CONCURRENCY, STREAM_MAX_PER_TENANT

# The Lambda Web Adapter layer, pinned here and nowhere else. AWS publishes the same
# version number in every commercial region (LWA docs, "Zip Packages"); a region that
# lags gets its own entry in WEB_ADAPTER_LAYER_VERSION_BY_REGION.
WEB_ADAPTER_ACCOUNT = "753240598075"
WEB_ADAPTER_LAYER_NAME = "LambdaAdapterLayerArm64"
WEB_ADAPTER_LAYER_VERSION = 26
WEB_ADAPTER_LAYER_VERSION_BY_REGION: dict[str, int] = {}

STREAM_ASSET = "functions/stream"
ADAPTER_PORT = "8080"
# Function URLs stream for up to 15 minutes; a followed run ends its stream before that.
STREAM_TIMEOUT = Duration.minutes(15)
STREAM_END_MARGIN_SECONDS = 60
# What the SSE clients send: auth, the multipart/JSON body, resume and retry headers
# (docs/api.md "CORS": Authorization, Content-Type, Idempotency-Key, Last-Event-ID, If-Match).
CORS_HEADERS = ["authorization", "content-type", "idempotency-key", "last-event-id", "if-match"]
CORS_EXPOSE_HEADERS = ["location", "etag", "retry-after"]

PROJECTOR_BATCH_SIZE = 100
PROJECTOR_RETRY_ATTEMPTS = 3
PROJECTOR_MAX_RECORD_AGE = Duration.hours(6)
PROJECTOR_BATCHING_WINDOW_SECONDS = 0
# The repair of a failed batch (the reconciler consuming ProjectorFailures): tries per message,
# and six times the reconciler's 2-minute timeout so a message is not given again while handled.
REPAIR_RECEIVES = 5
REPAIR_VISIBILITY = Duration.minutes(12)


def web_adapter_layer_arn(scope: Construct) -> str:
    region = Stack.of(scope).region
    version = WEB_ADAPTER_LAYER_VERSION
    if not Token.is_unresolved(region):
        version = WEB_ADAPTER_LAYER_VERSION_BY_REGION.get(region, version)
    return f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{WEB_ADAPTER_ACCOUNT}:layer:{WEB_ADAPTER_LAYER_NAME}:{version}"


class Stream(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        data: Data,
        functions: Functions,
        orchestration: Orchestration,
    ) -> None:
        super().__init__(scope, construct_id)

        adapter = lambda_.LayerVersion.from_layer_version_arn(self, "WebAdapterLayer", web_adapter_layer_arn(self))
        self.function = functions.function(
            self,
            "StreamFunction",
            FunctionSpec(
                asset=STREAM_ASSET,
                # run.sh starts uvicorn; the adapter (/opt/bootstrap) proxies invocations to it.
                handler="run.sh",
                description="SSE: execute/stream and a run's events (under the Lambda Web Adapter)",
                service="stream",
                timeout=STREAM_TIMEOUT,
                memory_size=MEMORY_MB["stream"],
                extra_layers=[adapter],
                environment={
                    "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
                    "AWS_LWA_INVOKE_MODE": "response_stream",
                    "AWS_LWA_READINESS_CHECK_PATH": "/health",
                    "PORT": ADAPTER_PORT,
                    "CORS_ALLOW_ORIGINS": ",".join(config.cors_allow_origins),
                    # A stream ends cleanly (the client resumes) a minute before the function
                    # would time out: a timeout is an error, and it would trip the alarm.
                    "STREAM_MAX_SECONDS": str(int(STREAM_TIMEOUT.to_seconds()) - STREAM_END_MARGIN_SECONDS),
                    "STREAM_MAX_PER_TENANT": str(STREAM_MAX_PER_TENANT),
                    **orchestration.run_control_environment(config),
                },
                # The cap on streams open at once (API and function URL together).
                reserved_concurrency=config.stream_concurrency or RESERVED_CONCURRENCY["stream"],
                # No SnapStart: the adapter starts uvicorn as a subprocess with its own
                # sockets, which a snapshot would freeze (docs/decisions.md).
                alias=False,
                sync_caller="API Gateway's streaming integration and the function URL",
            ),
        )
        # Creates runs and claims (execute/stream), reads a run, holds per-tenant stream leases
        # (PutItem, UpdateItem, and DeleteItem when a stream ends); never cancels or lists.
        data.grant(data.runs_table, self.function, "GetItem", "Query", "PutItem", "UpdateItem", "DeleteItem")
        data.grant(data.events_table, self.function, "Query")
        data.envs_key.grant(self.function, "kms:GenerateDataKey")
        data.fingerprint_key.grant(self.function, "kms:GenerateMac")
        # It starts runs (execute/stream) and never stops or describes one.
        orchestration.grant_start(self.function)

        # Auth NONE: the app verifies the JWT itself, as it does behind API Gateway. CORS as
        # the API answers it: the listed origins only (none listed: no CORS).
        self.function_url = self.function.add_function_url(
            auth_type=lambda_.FunctionUrlAuthType.NONE,
            invoke_mode=lambda_.InvokeMode.RESPONSE_STREAM,
            cors=(
                lambda_.FunctionUrlCorsOptions(
                    allowed_origins=list(config.cors_allow_origins),
                    allowed_methods=[lambda_.HttpMethod.GET, lambda_.HttpMethod.POST],
                    allowed_headers=CORS_HEADERS,
                    exposed_headers=CORS_EXPOSE_HEADERS,
                    max_age=Duration.hours(1),
                )
                if config.cors_allow_origins
                else None
            ),
        )
        skip_checkov(
            self.function_url,
            "CKV_AWS_258",
            "Browsers cannot sign requests with SigV4: the app verifies the caller's JWT (issuer, audience, "
            "JWKS) on every route, as behind API Gateway; the function's reserved concurrency caps it.",
        )

        self.projector = functions.function(
            self,
            "Projector",
            FunctionSpec(
                asset=STREAM_ASSET,
                handler="workflow_runs_stream.projector.handler",
                description="Projects run changes from the runs table's stream into the event log",
                service="projector",
                timeout=Duration.minutes(1),
                memory_size=MEMORY_MB["projector"],
                # Its own share: events keep flowing to viewers however many streams are open.
                reserved_concurrency=config.projector_concurrency or RESERVED_CONCURRENCY["projector"],
                alias=True,
                sync_caller="its DynamoDB stream mapping, whose failures go to the ProjectorFailures queue",
                # Stream records carry no trace header, so an ACTIVE projector would start a trace
                # of its own at Lambda's fixed sampling (1 a second, then 5 %; sampling rules do not
                # apply to it): one per stream record at low traffic, the most numerous traces of the
                # stack, each showing one event write and linked to no request. Its failures are in
                # its logs, the ProjectorFailures queue and its alarms (docs/decisions.md, 2026-12-07).
                tracing=lambda_.Tracing.PASS_THROUGH,
            ),
        )
        self.projector_alias = functions.aliases["projector"]
        # It reads the run's partition and writes each change as an event; when TTL deletes an
        # ended run's head, it moves the run's counters and deletes its other items
        # (store/retention.py).
        data.grant(data.runs_table, self.projector, "Query", "PutItem", "UpdateItem", "DeleteItem")
        data.grant(data.events_table, self.projector, "PutItem")

        # Records that still fail after bisecting and the bounded retries are parked here
        # (their stream coordinates, not their data) so one poison record never blocks a shard.
        # The reconciler consumes them (the repair path: it reads the range back from the
        # stream and writes the closing event of every ended run in it); a message it still
        # cannot handle after REPAIR_RECEIVES receives (the range past the stream's 24 h
        # retention, say) is parked in ProjectorRepairFailures (alarmed).
        self.repair_dlq = failure_queue(
            self, "ProjectorRepairFailures", feeds="dead-letter queue of the reconciler's repair of failed stream batches"
        )
        self.projector_dlq = failure_queue(
            self,
            "ProjectorFailures",
            feeds="on-failure destination of the projector's event source mapping",
            consumed=(self.repair_dlq, REPAIR_RECEIVES, REPAIR_VISIBILITY),
        )
        reconciler = orchestration.reconciler
        # The repair reads a run's log (is it closed?) and writes its closing events.
        data.grant(data.events_table, reconciler, "Query", "PutItem")
        # The stream's ARN and shard are in each message: it only reads the range back.
        reconciler.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:GetShardIterator", "dynamodb:GetRecords"],
                                resources=[data.runs_table.table_stream_arn])
        )
        self.projector_dlq.grant_consume_messages(reconciler)
        orchestration.reconciler_alias.add_event_source(
            event_sources.SqsEventSource(self.projector_dlq, batch_size=10, report_batch_item_failures=True)
        )
        self._grant_stream_read(data, self.projector)
        # The mapping invokes the `live` alias: the published (SnapStart) version.
        self.event_source = self.projector_alias.add_event_source_mapping(
            "RunsStream",
            event_source_arn=data.runs_table.table_stream_arn,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=PROJECTOR_BATCH_SIZE,
            bisect_batch_on_error=True,
            retry_attempts=PROJECTOR_RETRY_ATTEMPTS,
            max_record_age=PROJECTOR_MAX_RECORD_AGE,
            report_batch_item_failures=True,
            on_failure=event_sources.SqsDlq(self.projector_dlq),
            filters=projector_filters(),
            # Batches per shard at once; one partition key (one run) stays in order.
            parallelization_factor=PROJECTOR_PARALLELIZATION_FACTOR,
            # Latency first (docs/streaming.md, "Latency budget"): a batch is invoked as soon
            # as the poller finds records, never held to fill up. Costs more invocations under
            # light load (one per poll that finds records), no more write units: the projector
            # writes one event item per event whatever the batch size.
            max_batching_window=Duration.seconds(PROJECTOR_BATCHING_WINDOW_SECONDS),
        )

    def _grant_stream_read(self, data: Data, function: lambda_.IFunction) -> None:
        # Not Table.grantStreamRead: it allows dynamodb:ListStreams on "*". These are the
        # four actions Lambda's poller uses, scoped to this table's streams (DynamoDB guide,
        # "IAM policy to allow a Lambda function to access DynamoDB stream records").
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                resources=[data.runs_table.table_stream_arn],
            )
        )
        # ListStreams supports no resource-level permission (Service Authorization Reference):
        # a statement naming the table's streams would never match, so it names none.
        function.add_to_role_policy(iam.PolicyStatement(actions=["dynamodb:ListStreams"], resources=["*"]))
        data.table_key.grant_decrypt(function)
        Validations.of(function.role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="dynamodb:ListStreams supports no resource-level permission; it lists stream ARNs, "
                "no data (the reads, GetRecords and GetShardIterator, name this table's stream).",
            )
        )


def projector_filters() -> Sequence[dict]:
    """Inserts and updates of a run's partition (the run, its activity runs, its thinking
    chunks) become events, and the deletion of a run's head (DynamoDB's TTL, after
    RUN_RETENTION_DAYS) moves its counters: counters, workflows and idempotency items, and
    every other deletion, never invoke the projector."""
    run_partition = {keys.PK: {"S": lambda_.FilterRule.begins_with(keys.run_pk(""))}}
    return [
        lambda_.FilterCriteria.filter(
            {"eventName": lambda_.FilterRule.or_("INSERT", "MODIFY"), "dynamodb": {"Keys": run_partition}}
        ),
        lambda_.FilterCriteria.filter(
            {
                "eventName": lambda_.FilterRule.or_("REMOVE"),
                "dynamodb": {"Keys": {**run_partition, keys.SK: {"S": lambda_.FilterRule.or_(keys.RUN_SK)}}},
            }
        ),
    ]


def _logical(construct: Construct) -> str:
    return Stack.of(construct).get_logical_id(construct.node.default_child)
