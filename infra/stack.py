"""The one stack: composes the concerns like the diagram in DESIGN.md, nothing more.

clients ── API (public REST, private REST) ──> API function:live ─┐
clients ── same APIs, STREAM / function URL ──> stream function ──┼─> state machine ─> step runner:live
runs table ──stream──> projector:live ──> event log                │   reconciler:live (EventBridge, sweep)
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.api import Api
from infra.constructs.data import Data
from infra.constructs.functions import SERVICE_NAME, Functions
from infra.constructs.observability import Observability
from infra.constructs.orchestration import Orchestration
from infra.constructs.stream import Stream
from infra.sizing import RESERVED_CONCURRENCY, STREAM_MAX_PER_TENANT


class WorkflowRunsStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, deps_layer_dir: Path, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, termination_protection=config.retain_data, **kwargs)
        Tags.of(self).add("project", SERVICE_NAME)
        Tags.of(self).add("stage", config.name)

        data = Data(self, "Data", config=config)
        functions = Functions(
            self,
            "Functions",
            config=config,
            deps_layer_dir=deps_layer_dir,
            environment=shared_environment(config, data),
        )
        orchestration = Orchestration(self, "Orchestration", config=config, data=data, functions=functions)
        stream = Stream(self, "Stream", config=config, data=data, functions=functions, orchestration=orchestration)
        api = Api(
            self,
            "Api",
            config=config,
            data=data,
            functions=functions,
            orchestration=orchestration,
            stream_function=stream.function,
        )
        # The HTTP apps recognise internal callers by the API id in the request context. No
        # cycle: the REST API resource itself does not depend on the functions.
        if api.private_api is not None:
            for http_function in (api.function, stream.function):
                http_function.add_environment("PRIVATE_API_IDS", api.private_api.rest_api_id)

        Observability(
            self,
            "Observability",
            config=config,
            functions=functions.functions,
            state_machines={"": orchestration.state_machine, "Express": orchestration.express_state_machine},
            dead_letter_queues={
                "ProjectorFailures": stream.projector_dlq,
                "ProjectorRepairFailures": stream.repair_dlq,
                "ReconcilerDeadLetters": orchestration.reconciler_dlq,
            },
            apis=[a for a in (api.public_api, api.private_api) if a is not None],
            projector=stream.projector,
            stream_concurrency=config.stream_concurrency or RESERVED_CONCURRENCY["stream"],
            stream_max_per_tenant=STREAM_MAX_PER_TENANT,
        )

        # One origin for a browser app: blocking calls and streams both under PublicApiUrl.
        CfnOutput(self, "PublicApiUrl", value=api.public_api.url_for_path("/api/v1/workflow-runs"))
        CfnOutput(self, "StreamUrl", value=stream.function_url.url)
        if api.private_api is not None:
            CfnOutput(self, "PrivateApiId", value=api.private_api.rest_api_id)
        CfnOutput(self, "StateMachineArn", value=orchestration.state_machine.state_machine_arn)
        CfnOutput(self, "ExpressStateMachineArn", value=orchestration.express_state_machine.state_machine_arn)
        CfnOutput(self, "RunsTableName", value=data.runs_table.table_name)


def shared_environment(config: StageConfig, data: Data) -> dict[str, str]:
    """What every function reads (Settings field names, upper-cased)."""
    environment = {
        "RUNS_TABLE": data.runs_table.table_name,
        "EVENTS_TABLE": data.events_table.table_name,
        "JWKS_URL": config.jwks_url,
        "JWT_ISSUER": config.jwt_issuer,
        "JWT_AUDIENCE": config.jwt_audience,
        "JWT_TENANT_CLAIM": config.jwt_tenant_claim,
        "JWT_ALGORITHMS": ",".join(config.jwt_algorithms),
        "EXECUTE_WAIT_SECONDS": str(config.execute_wait_seconds),
        "LLM_PROVIDER": config.llm_provider,
        "BEDROCK_MODEL_ID": config.bedrock_model_id,
        "ENVS_KMS_KEY_ID": data.envs_key.key_arn,
        "TOKENS_KMS_KEY_ID": data.tokens_key.key_arn,
        "FINGERPRINT_KMS_KEY_ID": data.fingerprint_key.key_arn,
    }
    if config.http_step_allowed_hosts:
        environment["HTTP_STEP_ALLOWED_HOSTS"] = ",".join(config.http_step_allowed_hosts)
    return environment
