"""The one place that holds what every function shares.

Runtime, arm64, JSON logs into a KMS-encrypted log group with the stage's retention, X-Ray
tracing, the two layers (the domain and the third-party dependencies), the Powertools
settings (POWERTOOLS_SERVICE_NAME = the function's service: api, step-runner, projector,
reconciler, stream; namespace WorkflowRuns) and the environment every function reads. A
concern asks for a function by asset and handler and gets all of this; nothing here is
copied per function. A function that asks for it gets reserved concurrency, and a
published version behind the alias `live` (with SnapStart when the stage turns it on):
callers then invoke the alias, never $LATEST.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Acknowledgment, Annotations, Aws, Duration, RemovalPolicy, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.checks import skip_checkov
from infra.config import REPO_ROOT, StageConfig

# The dependencies layer holds cp312 wheels for manylinux2014_aarch64 (infra/build.py);
# runtime and wheels move together.
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
SERVICE_NAME = "workflow-runs"
DEFAULT_TIMEOUT = Duration.seconds(30)
METRICS_NAMESPACE = "WorkflowRuns"
# The alias every caller invokes (API Gateway, Step Functions, the stream mapping, EventBridge).
LIVE_ALIAS = "live"

_NO_VPC = (
    "The function reaches only AWS APIs (DynamoDB, Step Functions, KMS, Bedrock, CloudWatch) over "
    "TLS with IAM auth, and no resource in a VPC; a VPC would add NAT or endpoint cost and nothing to guard."
)
_ENV_NOT_SECRET = (
    "The environment holds names, ARNs, URLs and knobs, no secret (envs are sealed with the envs KMS key "
    "in the table); Lambda encrypts it at rest with its service key."
)
_NO_DLQ_SYNC = (
    "Invoked synchronously only ({caller}): the caller sees and retries a failure, so an async "
    "dead-letter queue would never receive anything."
)

# Never ship caches or tests inside a function or layer zip.
ASSET_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/tests", "*.egg-info"]


def asset(relative: str) -> lambda_.Code:
    return lambda_.Code.from_asset(str(REPO_ROOT / relative), exclude=ASSET_EXCLUDES)


@dataclass(frozen=True)
class FunctionSpec:
    """What differs between functions: everything else is a default of FunctionFactory."""

    asset: str  # folder relative to the repository root, e.g. "functions/api"
    handler: str
    description: str
    service: str  # POWERTOOLS_SERVICE_NAME suffix and log group name
    timeout: Duration | None = None  # default: 30 s
    memory_size: int = 512
    environment: Mapping[str, str] | None = None
    extra_layers: Sequence[lambda_.ILayerVersion] = ()
    # None: no reservation (checkov's CKV_AWS_115 is then skipped with `concurrency_note`).
    reserved_concurrency: int | None = None
    concurrency_note: str = ""
    # A published version behind the `live` alias (and SnapStart on it when the stage says so).
    alias: bool = False
    # Async invocations (EventBridge) that fail after Lambda's retries land here; None: the
    # function is only invoked synchronously, by `sync_caller`.
    dead_letter_queue: sqs.IQueue | None = None
    sync_caller: str = ""
    # X-Ray: ACTIVE records the function's own sampled traces; PASS_THROUGH only continues a
    # trace its caller sampled.
    tracing: lambda_.Tracing = lambda_.Tracing.ACTIVE


class Functions(Construct):
    """Holds the shared layers and builds every Lambda function of the stack with the shared
    defaults. `function(scope, …)` puts the function inside the concern that asked for it, so
    the construct tree reads like the diagram."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        deps_layer_dir: Path,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._environment = dict(environment)
        self._removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.common_layer = lambda_.LayerVersion(
            self,
            "CommonLayer",
            code=asset("layers/common"),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="workflow_runs domain and workflow_runs_http glue",
        )
        self.deps_layer = lambda_.LayerVersion(
            self,
            "DepsLayer",
            code=lambda_.Code.from_asset(str(deps_layer_dir), exclude=ASSET_EXCLUDES),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="third-party wheels from requirements/runtime.lock (make build)",
        )
        # Every log group of the stack (functions, state machines, API access logs) is
        # encrypted with this key; CloudWatch Logs may use it for this account's groups only.
        self.logs_key = kms.Key(
            self,
            "LogsKey",
            description=f"workflow-runs {config.name}: encrypts the log groups",
            enable_key_rotation=True,
            removal_policy=self._removal,
        )
        self.logs_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                        )
                    }
                },
            )
        )
        self.functions: dict[str, lambda_.Function] = {}
        # service → the `live` alias of the functions that have one.
        self.aliases: dict[str, lambda_.Alias] = {}

    def log_group(self, scope: Construct, construct_id: str) -> logs.LogGroup:
        """A log group with the stage's retention, encrypted with the logs key."""
        return logs.LogGroup(
            scope,
            construct_id,
            retention=self._config.log_retention,
            removal_policy=self._removal,
            encryption_key=self.logs_key,
        )

    def function(self, scope: Construct, construct_id: str, spec: FunctionSpec) -> lambda_.Function:
        log_group = self.log_group(scope, f"{construct_id}Logs")
        # Our own role writes only to this function's log group: no managed
        # AWSLambdaBasicExecutionRole with logs:* on every group of the account.
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{SERVICE_NAME} {spec.service} function",
        )
        log_group.grant_write(role)
        environment = {
            **self._environment,
            "POWERTOOLS_SERVICE_NAME": spec.service,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": self._config.powertools_log_level,
            **(spec.environment or {}),
        }
        function = lambda_.Function(
            scope,
            construct_id,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=asset(spec.asset),
            handler=spec.handler,
            description=spec.description,
            timeout=spec.timeout or DEFAULT_TIMEOUT,
            memory_size=spec.memory_size,
            role=role,
            layers=[self.common_layer, self.deps_layer, *spec.extra_layers],
            environment=environment,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=_application_log_level(self._config.powertools_log_level),
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            tracing=spec.tracing,
            reserved_concurrent_executions=spec.reserved_concurrency,
            dead_letter_queue=spec.dead_letter_queue,
            snap_start=(
                lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if spec.alias and self._config.snap_start else None
            ),
            # A version the alias left is deleted by the next deploy: no stale snapshot keeps
            # paying SnapStart's cache charge.
            current_version_options=(
                lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY) if spec.alias else None
            ),
        )
        # Metrics go out as EMF in the logs: no permission needed, and no code calls
        # PutMetricData (the IAM evaluation, tests/infra/test_iam_calls.py, found no call).
        if spec.alias:
            # A new version is published whenever the function's code or configuration
            # changes (currentVersion); `live` moves to it in the same deployment.
            self.aliases[spec.service] = lambda_.Alias(
                scope, f"{construct_id}Live", alias_name=LIVE_ALIAS, version=function.current_version
            )
            Annotations.of(function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish",
                "Published: every caller invokes the `live` alias of the current version.",
            )
        skip_checkov(function, "CKV_AWS_117", _NO_VPC)
        skip_checkov(function, "CKV_AWS_173", _ENV_NOT_SECRET)
        if spec.dead_letter_queue is None:
            skip_checkov(function, "CKV_AWS_116", _NO_DLQ_SYNC.format(caller=spec.sync_caller or "its caller"))
        if spec.reserved_concurrency is None:
            skip_checkov(function, "CKV_AWS_115", spec.concurrency_note)
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray tracing (xray:PutTraceSegments, xray:PutTelemetryRecords) supports no "
                "resource-level permissions.",
            )
        )
        # Python 3.12 is pinned on purpose: the dependencies layer carries cp312 wheels.
        Validations.of(function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="python3.12 is pinned to match the cp312 aarch64 wheels of the "
                "dependencies layer (infra/build.py); runtime and wheels are upgraded together.",
            )
        )
        self.functions[spec.service] = function
        return function

    def invocable(self, service: str) -> lambda_.IFunction:
        """What callers of `service` invoke: its `live` alias, or the function when it has none."""
        return self.aliases.get(service) or self.functions[service]


def _application_log_level(level: str) -> lambda_.ApplicationLogLevel:
    # Powertools says WARNING where Lambda's log filter says WARN.
    return getattr(lambda_.ApplicationLogLevel, {"WARNING": "WARN"}.get(level.upper(), level.upper()))
