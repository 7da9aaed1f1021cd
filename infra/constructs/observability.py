"""Observability: alarms on what means "runs are not flowing" and one dashboard per stage
and region (`workflow-runs-<stage>-<region>`).

Alarmed: dead letters waiting (projector failures, undelivered reconciler events), state
machine executions failed or timed out, API 5xx, the projector falling behind the stream
(iterator age, and the functions' own ProjectionLag), throttles and errors of every
function, and from the functions' Powertools metrics (namespace WorkflowRuns, dimension
`service`): runs ending failed, streams refused by the per-tenant cap, open streams near
the stream function's concurrency cap. Alarms notify one encrypted SNS topic (and an
e-mail address when the stage names one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
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
from workflow_runs.states import RUN_CLASSES

from infra.config import StageConfig

ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)
# The projector may lag this far behind the runs table before SSE clients notice.
ITERATOR_AGE_LIMIT_MS = 60_000
API_5XX_PER_5_MINUTES = 5
FUNCTION_ERRORS_PER_5_MINUTES = 5
# Powertools metrics of the functions (names agreed with the functions' code).
METRICS_NAMESPACE = "WorkflowRuns"
# Services that may end a run as failed: the step runner (a step failed), the reconciler
# (an execution failed, timed out or was aborted, or a stale run swept), the API (a start
# that failed, an approval rejected).
RUN_ENDING_SERVICES = ("api", "step-runner", "reconciler")
FAILED_RUNS_PER_5_MINUTES = 5
STREAMS_REFUSED_PER_5_MINUTES = 10
# Alarm when the streams open at once reach this share of the stream function's cap.
OPEN_STREAMS_SHARE = 0.8


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
        stream_concurrency: int,
        stream_max_per_tenant: int,
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
        projection_lag = app_metric("ProjectionLag", "projector", statistic="Maximum", period=ONE_MINUTE)
        alarm(
            "ProjectionLag",
            projection_lag,
            ITERATOR_AGE_LIMIT_MS,
            "Events reach the event log late (ProjectionLag: the stream record's creation to its event)",
            periods=3,
        )
        failed_runs = cloudwatch.MathExpression(
            expression="+".join(f"FILL(f{i},0)" for i in range(len(RUN_ENDING_SERVICES) * len(RUN_CLASSES))),
            using_metrics={
                f"f{i}": app_metric("RunsEnded", service, Status="failed", RunClass=run_class)
                for i, (service, run_class) in enumerate((s, c) for s in RUN_ENDING_SERVICES for c in RUN_CLASSES)
            },
            label="Runs ended failed",
            period=FIVE_MINUTES,
        )
        alarm("RunsFailed", failed_runs, FAILED_RUNS_PER_5_MINUTES, "Runs are ending failed (RunsEnded Status=failed)")
        streams_refused = app_metric("StreamsRefused", "stream")
        alarm(
            "StreamsRefused",
            streams_refused,
            STREAMS_REFUSED_PER_5_MINUTES,
            "Streams refused by the per-tenant cap (429): a tenant opens more than STREAM_MAX_PER_TENANT",
        )
        # Each open stream holds one stream function: the function's own concurrency is the
        # number of streams open at once, all tenants together.
        streams_open = functions["stream"].metric("ConcurrentExecutions", statistic="Maximum", period=ONE_MINUTE)
        alarm(
            "OpenStreamsNearCap",
            streams_open,
            max(1, int(stream_concurrency * OPEN_STREAMS_SHARE)),
            f"Open streams near the stream function's concurrency cap ({stream_concurrency}): new streams "
            "will be throttled",
            periods=3,
        )
        # OpenStreams: the opening tenant's own streams (its leases), so its Maximum is the
        # busiest tenant's count against STREAM_MAX_PER_TENANT.
        tenant_streams = app_metric("OpenStreams", "stream", statistic="Maximum", period=ONE_MINUTE)
        alarm(
            "TenantOpenStreamsNearCap",
            tenant_streams,
            max(1, int(stream_max_per_tenant * OPEN_STREAMS_SHARE)),
            f"A tenant holds streams near its cap (STREAM_MAX_PER_TENANT = {stream_max_per_tenant}): more "
            "will be refused with 429",
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

        # The region in the name: one dashboard per stage and region, side by side in a
        # multi-region account.
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"workflow-runs-{config.name}-{Stack.of(self).region}",
            default_interval=Duration.hours(3),
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
            cloudwatch.GraphWidget(
                title="Runs started and ended (by run class, status)",
                left=[
                    search("RunsStarted", "service,RunClass", "Sum"),
                    search("RunsEnded", "service,Status,RunClass", "Sum"),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Step duration p99 (ms, by step type)",
                left=[search("StepDuration", "service,StepType", "p99")],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Streams: open (all tenants; the busiest tenant's), refused",
                left=[streams_open, tenant_streams],
                right=[streams_refused],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=stream_concurrency, label="stream function cap")
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Projection lag (ms): functions' ProjectionLag, mapping's iterator age",
                left=[projection_lag, iterator_age],
                width=12,
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


def app_metric(
    name: str, service: str, *, statistic: str = "Sum", period: Duration = FIVE_MINUTES, **dimensions: str
) -> cloudwatch.Metric:
    """A Powertools metric of one function (namespace WorkflowRuns, dimension service)."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service, **dimensions},
        statistic=statistic,
        period=period,
    )


def search(name: str, dimensions: str, statistic: str) -> cloudwatch.MathExpression:
    """Every series of a metric whatever its extra dimensions' values (dashboard only)."""
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{{{METRICS_NAMESPACE},{dimensions}}} MetricName=\"{name}\"', '{statistic}', 300)",
        using_metrics={},
        label=name,
        period=FIVE_MINUTES,
    )


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
