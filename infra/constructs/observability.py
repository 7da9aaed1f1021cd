"""Observability: alarms on what means "runs are not flowing" and one dashboard.

Alarmed: dead letters waiting (projector failures, undelivered reconciler events), state
machine executions failed or timed out, API 5xx, the projector falling behind the stream
(iterator age), throttles and errors of every function. Alarms notify one encrypted SNS
topic (and an e-mail address when the stage names one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import StageConfig

ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)
# The projector may lag this far behind the runs table before SSE clients notice.
ITERATOR_AGE_LIMIT_MS = 60_000
API_5XX_PER_5_MINUTES = 5
FUNCTION_ERRORS_PER_5_MINUTES = 5


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        functions: Mapping[str, lambda_.Function],
        state_machines: Mapping[str, sfn.StateMachine],
        dead_letter_queues: Mapping[str, sqs.IQueue],
        apis: Sequence[apigw.RestApi],
        projector: lambda_.Function,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms: list[cloudwatch.Alarm] = []

        key = kms.Key(
            self,
            "AlarmTopicKey",
            description=f"workflow-runs {config.name}: encrypts the alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # CloudWatch publishes to an encrypted topic only if the key lets it.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(self, "AlarmTopic", master_key=key, enforce_ssl=True)
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        action = cw_actions.SnsAction(self.topic)

        def alarm(
            alarm_id: str, metric: cloudwatch.IMetric, threshold: float, description: str, *, periods: int = 1
        ) -> cloudwatch.Alarm:
            created = metric.create_alarm(
                self,
                alarm_id,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            created.add_alarm_action(action)
            created.add_ok_action(action)
            self.alarms.append(created)
            return created

        for name, queue in dead_letter_queues.items():
            alarm(
                f"{name}Depth",
                queue.metric_approximate_number_of_messages_visible(period=ONE_MINUTE, statistic="Maximum"),
                1,
                f"{name}: messages are waiting in a dead-letter queue",
            )
        # Keyed by the run class ("" for Standard, "Express"); both publish AWS/States metrics.
        for prefix, state_machine in state_machines.items():
            alarm(
                f"{prefix}ExecutionsFailed",
                state_machine.metric_failed(period=FIVE_MINUTES),
                1,
                f"{prefix or 'Standard'} run executions failed (the reconciler settles their runs; look at why)",
            )
            alarm(
                f"{prefix}ExecutionsTimedOut",
                state_machine.metric_timed_out(period=FIVE_MINUTES),
                1,
                f"{prefix or 'Standard'} run executions timed out",
            )
        for api in apis:
            alarm(
                f"{api.node.id}5xx",
                api.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
                API_5XX_PER_5_MINUTES,
                f"{api.node.id}: 5xx answers",
            )
        iterator_age = projector.metric("IteratorAge", period=ONE_MINUTE, statistic="Maximum")
        alarm(
            "ProjectorIteratorAge",
            iterator_age,
            ITERATOR_AGE_LIMIT_MS,
            "The projector is falling behind the runs table's stream: SSE clients see events late",
            periods=3,
        )
        for name, function in functions.items():
            alarm(
                f"{_pascal(name)}Throttles",
                function.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
                1,
                f"{name}: invocations throttled",
            )
            alarm(
                f"{_pascal(name)}Errors",
                function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                FUNCTION_ERRORS_PER_5_MINUTES,
                f"{name}: invocation errors",
            )

        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"workflow-runs-{config.name}", default_interval=Duration.hours(3)
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24, height=4),
        )
        self.dashboard.add_widgets(
            *(
                cloudwatch.GraphWidget(
                    title=f"{api.node.id}: requests, 4xx, 5xx",
                    left=[
                        api.metric_count(period=FIVE_MINUTES),
                        api.metric_client_error(period=FIVE_MINUTES),
                        api.metric_server_error(period=FIVE_MINUTES),
                    ],
                    right=[api.metric_latency(period=FIVE_MINUTES, statistic="p99")],
                    width=12,
                )
                for api in apis
            ),
            *(
                cloudwatch.GraphWidget(
                    title=f"{prefix or 'Standard'} run executions",
                    left=[
                        state_machine.metric_started(period=FIVE_MINUTES),
                        state_machine.metric_succeeded(period=FIVE_MINUTES),
                        state_machine.metric_failed(period=FIVE_MINUTES),
                        state_machine.metric_aborted(period=FIVE_MINUTES),
                        state_machine.metric_timed_out(period=FIVE_MINUTES),
                    ],
                    width=12,
                )
                for prefix, state_machine in state_machines.items()
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Function errors",
                left=[f.metric_errors(period=FIVE_MINUTES, label=n) for n, f in functions.items()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Function duration p99",
                left=[f.metric_duration(period=FIVE_MINUTES, statistic="p99", label=n) for n, f in functions.items()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Throttles",
                left=[f.metric_throttles(period=FIVE_MINUTES, label=n) for n, f in functions.items()],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Projector iterator age (ms)", left=[iterator_age], width=12),
            cloudwatch.GraphWidget(
                title="Dead letters",
                left=[
                    q.metric_approximate_number_of_messages_visible(period=ONE_MINUTE, label=n)
                    for n, q in dead_letter_queues.items()
                ],
                width=12,
            ),
        )


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
