"""The one place that holds what every function shares.

Runtime, arm64, JSON logs into a log group with the stage's retention, X-Ray tracing,
the two layers (the domain and the third-party dependencies), the Powertools settings
and the environment every function reads. A concern asks for a function by asset and
handler and gets all of this; nothing here is copied per function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import REPO_ROOT, StageConfig

# The dependencies layer holds cp312 wheels for manylinux2014_aarch64 (infra/build.py);
# runtime and wheels move together.
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
SERVICE_NAME = "workflow-runs"
DEFAULT_TIMEOUT = Duration.seconds(30)
METRICS_NAMESPACE = "WorkflowRuns"

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
        self.functions: dict[str, lambda_.Function] = {}

    def function(self, scope: Construct, construct_id: str, spec: FunctionSpec) -> lambda_.Function:
        log_group = logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=self._config.log_retention,
            removal_policy=self._removal,
        )
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
            "POWERTOOLS_SERVICE_NAME": f"{SERVICE_NAME}-{spec.service}",
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
            tracing=lambda_.Tracing.ACTIVE,
        )
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords "
                "support no resource-level permissions.",
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


def _application_log_level(level: str) -> lambda_.ApplicationLogLevel:
    # Powertools says WARNING where Lambda's log filter says WARN.
    return getattr(lambda_.ApplicationLogLevel, {"WARNING": "WARN"}.get(level.upper(), level.upper()))
