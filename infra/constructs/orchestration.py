"""Orchestration: one generic state machine definition deployed twice (Standard and Express,
the two run classes), the step runner they call for each step, and the reconciler that makes
sure no run stays `running` forever (EventBridge "Execution Status Change" for failed,
timed-out or aborted Standard executions, plus a scheduled sweep that also settles Express
runs, which send no such events).
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
from infra.sizing import MEMORY_MB, RESERVED_CONCURRENCY

STATE_MACHINE_FILE = REPO_ROOT / "infra" / "state_machine.asl.json"
STEP_RUNNER_ASSET = "functions/step_runner"
# Cross-region inference profiles (us.…, eu.…, global.…) route to the same model in
# several regions; a plain id is an on-demand model of this region.
# What the step runner and the reconciler do to the runs table: read a run (GetItem, Query)
# and move it (PutItem, UpdateItem, ConditionCheckItem in conditional transactions).
RUN_WRITER_ACTIONS = ("GetItem", "Query", "PutItem", "UpdateItem", "ConditionCheckItem")
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
                # Its own share of the account's concurrency: stream viewers cannot starve
                # running steps, and a flood of runs throttles (retried by the state machine)
                # instead of starving everything else.
                reserved_concurrency=config.step_runner_concurrency or RESERVED_CONCURRENCY["step_runner"],
                alias=True,
                sync_caller="the state machines' lambda:invoke tasks, which retry and catch",
            ),
        )
        # The state machines invoke the published version behind `live`, never $LATEST.
        self.step_runner_alias = functions.aliases["step-runner"]
        # Reads the run; writes activity runs and status changes (conditional transactions).
        data.grant(data.runs_table, self.step_runner, *RUN_WRITER_ACTIONS)
        # Decrypt: a run's envs; GenerateDataKey on the tokens' key: sealing an approval's task token.
        data.envs_key.grant(self.step_runner, "kms:Decrypt")
        data.tokens_key.grant(self.step_runner, "kms:GenerateDataKey")
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

        # One definition, two run classes (docs/orchestration.md). Both are named, so the
        # ARN of their executions (…:execution:<name>:<runId>) can be written into policies
        # without a wildcard on the machine.
        self.state_machine_name = f"workflow-runs-{config.name}"
        self.state_machine = self._machine(
            "StateMachine",
            self.state_machine_name,
            sfn.StateMachineType.STANDARD,
            functions.log_group(self, "ExecutionLogs"),
            # ALL events, but never the execution data: inputs and outputs may carry user data.
            sfn.LogLevel.ALL,
        )
        self.express_state_machine_name = f"workflow-runs-{config.name}-express"
        self.express_state_machine = self._machine(
            "ExpressStateMachine",
            self.express_state_machine_name,
            sfn.StateMachineType.EXPRESS,
            functions.log_group(self, "ExpressExecutionLogs"),
            # An Express execution keeps its history only here. ERROR: every failed, timed-out
            # or aborted execution and failed task is logged (what an operator looks for);
            # the run's own history is in the store, and logging every event of every run
            # would cost more than the executions (docs/decisions.md). Never execution data.
            sfn.LogLevel.ERROR,
        )
        Validations.of(self.express_state_machine).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SF1",
                reason="Express logs ERROR (failed, timed-out executions and failed tasks), not ALL: "
                "a run's steps and statuses are recorded in the runs table and its stream, and ALL "
                "events of every short run would cost more in log ingestion than the executions.",
            )
        )
        self.state_machines = (self.state_machine, self.express_state_machine)

        # Events that EventBridge could not deliver after its retries, and invocations that
        # failed after Lambda's own async retries, land here (alarmed).
        self.reconciler_dlq = failure_queue(
            self,
            "ReconcilerDeadLetters",
            feeds="dead-letter queue of the reconciler's EventBridge targets and of its async invocations",
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
                reserved_concurrency=config.reconciler_concurrency or RESERVED_CONCURRENCY["reconciler"],
                alias=True,
                dead_letter_queue=self.reconciler_dlq,
            ),
        )
        self.reconciler_alias = functions.aliases["reconciler"]
        # Finds stale runs (Query of the Active index) and settles them (conditional transactions).
        data.grant(data.runs_table, self.reconciler, *RUN_WRITER_ACTIONS, query_indexes=True)
        # It only reads a Standard execution's status; settling the run is a conditional table
        # write. Express runs are settled by age alone (no DescribeExecution by name).
        self._grant_executions(self.reconciler, "states:DescribeExecution")

        target = targets.LambdaFunction(
            self.reconciler_alias,
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
                    # Express sends no status events; the sweep settles its runs.
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

    def run_control_environment(self, config: StageConfig) -> dict[str, str]:
        """The settings of a function that starts and cancels runs."""
        return {
            "STATE_MACHINE_ARN": self.state_machine.state_machine_arn,
            "EXPRESS_STATE_MACHINE_ARN": self.express_state_machine.state_machine_arn,
            "ORCHESTRATION": config.orchestration,
        }

    def grant_start(self, function: lambda_.IFunction) -> None:
        """What a function that starts runs needs: StartExecution on both machines."""
        for machine in self.state_machines:
            machine.grant_start_execution(function)

    def grant_run_control(self, function: lambda_.IFunction) -> None:
        """What a function that starts and cancels runs needs of the state machines (an
        Express execution cannot be stopped: StopExecution is on Standard executions only)."""
        self.grant_start(function)
        self._grant_executions(function, "states:StopExecution")

    def grant_approval_decisions(self, function: lambda_.IFunction) -> None:
        """Approve / reject answer a waiting approval step's task token (SendTaskSuccess,
        SendTaskFailure). Not StateMachine.grantTaskResponse: it names the state machine, and
        these actions support no resource-level permission (Service Authorization Reference:
        no resource type), so AWS would deny them; the token itself names the task."""
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["states:SendTaskSuccess", "states:SendTaskFailure"], resources=["*"])
        )
        Validations.of(function.role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="states:SendTaskSuccess/SendTaskFailure support no resource-level permission; a call "
                "needs the task token, which only the step runner's sealed copy holds.",
            )
        )

    def _machine(
        self, construct_id: str, name: str, kind: sfn.StateMachineType, log_group: logs.LogGroup, level: sfn.LogLevel
    ) -> sfn.StateMachine:
        machine = sfn.StateMachine(
            self,
            construct_id,
            state_machine_name=name,
            state_machine_type=kind,
            definition_body=sfn.DefinitionBody.from_file(str(STATE_MACHINE_FILE)),
            definition_substitutions={
                "StepRunnerFunctionArn": self.step_runner_alias.function_arn,
                "RecordFailureFunctionArn": self.step_runner_alias.function_arn,
            },
            logs=sfn.LogOptions(destination=log_group, level=level, include_execution_data=False),
            tracing_enabled=True,
        )
        # lambda:InvokeFunction on the alias only: not $LATEST, not another version.
        self.step_runner_alias.grant_invoke(machine)
        Validations.of(machine.role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Step Functions log delivery (logs:CreateLogDelivery, …) and X-Ray "
                "(xray:PutTraceSegments, …) support no resource-level permissions.",
            ),
        )
        return machine

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
