"""Orchestration: the one generic Standard state machine, the step runner it calls for each
step, and the reconciler that makes sure no run stays `running` forever (EventBridge
"Execution Status Change" for failed/timed-out/aborted executions, plus a scheduled sweep).
"""

from __future__ import annotations

import re

from aws_cdk import Acknowledgment, Aws, Duration, Stack, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import REPO_ROOT, StageConfig
from infra.constructs.data import Data
from infra.constructs.functions import Functions, FunctionSpec
from infra.constructs.queues import failure_queue
from infra.sizing import MEMORY_MB

STATE_MACHINE_FILE = REPO_ROOT / "infra" / "state_machine.asl.json"
STEP_RUNNER_ASSET = "functions/step_runner"
# Cross-region inference profiles (us.…, eu.…, global.…) route to the same model in
# several regions; a plain id is an on-demand model of this region.
_INFERENCE_PROFILE = re.compile(r"^(us|us-gov|eu|apac|jp|au|ca|global)\.(.+)$")


def bedrock_resource_arns(model_id: str) -> list[str]:
    """The ARNs bedrock:InvokeModel* must allow for `model_id` (a model or an inference profile)."""
    profile = _INFERENCE_PROFILE.match(model_id)
    if profile is None:
        return [f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}::foundation-model/{model_id}"]
    return [
        f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:inference-profile/{model_id}",
        f"arn:{Aws.PARTITION}:bedrock:*::foundation-model/{profile.group(2)}",
    ]


class Orchestration(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        data: Data,
        functions: Functions,
    ) -> None:
        super().__init__(scope, construct_id)

        self.step_runner = functions.function(
            self,
            "StepRunner",
            FunctionSpec(
                asset=STEP_RUNNER_ASSET,
                handler="workflow_runs_step_runner.handler.handler",
                description="Runs one step of one run (called by the state machine)",
                service="step-runner",
                # An llm step streams a whole completion; an http step is bounded by its own timeout.
                timeout=Duration.minutes(5),
                memory_size=MEMORY_MB["step_runner"],
            ),
        )
        data.grant_read_write(data.runs_table, self.step_runner)
        data.envs_key.grant(self.step_runner, "kms:Decrypt")
        self.step_runner.add_to_role_policy(
            iam.PolicyStatement(
                actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                resources=bedrock_resource_arns(config.bedrock_model_id),
            )
        )
        if _INFERENCE_PROFILE.match(config.bedrock_model_id):
            Validations.of(self.step_runner.role).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/"
                    f"{_INFERENCE_PROFILE.match(config.bedrock_model_id).group(2)}]",
                    reason="A cross-region inference profile may serve the request from any of its "
                    "regions; the model is named, only the region is open.",
                )
            )

        execution_logs = logs.LogGroup(self, "ExecutionLogs", retention=config.log_retention)
        # Named, so the ARN of its executions (…:execution:<name>:<runId>) can be written
        # into policies without a wildcard on the machine.
        self.state_machine_name = f"workflow-runs-{config.name}"
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(STATE_MACHINE_FILE)),
            definition_substitutions={
                "StepRunnerFunctionArn": self.step_runner.function_arn,
                "RecordFailureFunctionArn": self.step_runner.function_arn,
            },
            # ALL events, but never the execution data: inputs and outputs may carry user data.
            logs=sfn.LogOptions(destination=execution_logs, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
        )
        self.step_runner.grant_invoke(self.state_machine)
        Validations.of(self.state_machine.role).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{_logical(self.step_runner)}.Arn>:*]",
                reason="lambda:InvokeFunction on the step runner's versions and aliases "
                "(Function.grantInvoke); the function itself is the only target.",
            ),
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Step Functions log delivery (logs:CreateLogDelivery, …) and X-Ray "
                "(xray:PutTraceSegments, …) support no resource-level permissions.",
            ),
        )

        self.reconciler = functions.function(
            self,
            "Reconciler",
            FunctionSpec(
                asset=STEP_RUNNER_ASSET,
                handler="workflow_runs_step_runner.reconciler.handler",
                description="Settles runs whose execution failed, timed out or was aborted; sweeps stale runs",
                service="reconciler",
                timeout=Duration.minutes(2),
                memory_size=MEMORY_MB["reconciler"],
                environment={"STATE_MACHINE_ARN": self.state_machine.state_machine_arn},
            ),
        )
        data.grant_read_write(data.runs_table, self.reconciler)
        # It only reads an execution's status; settling the run is a conditional table write.
        self._grant_executions(self.reconciler, "states:DescribeExecution")

        # Events that EventBridge could not deliver after its retries land here (alarmed).
        self.reconciler_dlq = failure_queue(
            self, "ReconcilerDeadLetters", feeds="dead-letter queue of the reconciler's EventBridge targets"
        )
        target = targets.LambdaFunction(
            self.reconciler,
            retry_attempts=4,
            max_event_age=Duration.hours(2),
            dead_letter_queue=self.reconciler_dlq,
        )
        self.status_change_rule = events.Rule(
            self,
            "ExecutionEnded",
            description="A run's execution failed, timed out or was aborted: settle the run",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                    "stateMachineArn": [self.state_machine.state_machine_arn],
                },
            ),
            targets=[target],
        )
        # The safety net: a lost event or a crashed step runner still ends in a settled run.
        self.sweep_rule = events.Rule(
            self,
            "Sweep",
            description="Sweep runs that stayed non-terminal too long",
            schedule=events.Schedule.rate(Duration.minutes(5)),
            targets=[target],
        )

    def grant_run_control(self, function: lambda_.IFunction) -> None:
        """What a function that starts and cancels runs needs of the state machine."""
        self.state_machine.grant_start_execution(function)
        self._grant_executions(function, "states:StopExecution", "states:DescribeExecution")

    def _grant_executions(self, function: lambda_.IFunction, *actions: str) -> None:
        executions = f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{self.state_machine_name}:*"
        function.add_to_role_policy(iam.PolicyStatement(actions=list(actions), resources=[executions]))
        Validations.of(function.role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
                f"execution:{self.state_machine_name}:*]",
                reason="The executions of this one state machine; an execution is named by its run id, "
                "unknown when the policy is written.",
            )
        )


def _logical(construct: Construct) -> str:
    """The logical id cdk-nag prints for a construct's resource (`<LogicalId.Arn>`)."""
    return Stack.of(construct).get_logical_id(construct.node.default_child)
