"""The one shape of queue the stack uses: where failures are parked (encrypted, TLS only,
kept 14 days, alarmed by the observability construct)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.checks import skip_checkov


def failure_queue(
    scope: Construct,
    construct_id: str,
    *,
    feeds: str,
    consumed: tuple[sqs.IQueue, int, Duration] | None = None,
) -> sqs.Queue:
    """A queue that is itself the last stop of `feeds` (so it has no dead-letter queue), or,
    when `consumed` = (dead-letter queue, max receive count, visibility timeout), one that a
    function consumes: what it cannot handle after that many receives moves on to its own
    dead-letter queue."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
        dead_letter_queue=sqs.DeadLetterQueue(queue=consumed[0], max_receive_count=consumed[1]) if consumed else None,
        visibility_timeout=consumed[2] if consumed else None,
    )
    if consumed is None:
        Validations.of(queue).acknowledge(
            Acknowledgment(id="AwsSolutions-SQS3", reason=f"This queue is itself the {feeds}.")
        )
    skip_checkov(
        queue,
        "CKV_AWS_27",
        "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled), which checkov does not recognise; it holds "
        "stream coordinates and event envelopes, no secret, and a customer key would need grants for "
        "EventBridge and Lambda's poller for no gain.",
    )
    return queue
