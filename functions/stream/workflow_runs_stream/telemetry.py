"""The stream function's telemetry with Powertools: one structured logger (correlation keys
`request_id`, `run_id`, `tenant`) and two metrics in the `WorkflowRuns` namespace, dimension
`service=stream`:

- `OpenStreams` (Count): the calling tenant's open streams, counting the one that opens
  (read with Maximum: how close the busiest tenant came to STREAM_MAX_PER_TENANT);
- `StreamsRefused` (Count): a stream refused by that cap (429).

The app runs under the Lambda Web Adapter, not a Lambda handler, so no `log_metrics`
decorator flushes: each metric is flushed as it is recorded (one EMF line per stream).
Nothing is built at import; Powertools loads on the first stream. EMF lines go to stdout in
Lambda only (CloudWatch reads them there); elsewhere they go to `write` when one is given
(tests) and nowhere otherwise, and logs go to stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import cached_property, lru_cache
from typing import Any

NAMESPACE = "WorkflowRuns"
SERVICE = "stream"
OPEN_STREAMS = "OpenStreams"
STREAMS_REFUSED = "StreamsRefused"


def in_lambda() -> bool:
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


class StreamTelemetry:
    def __init__(self, write: Callable[[str], None] | None = None, *, lambda_runtime: bool | None = None):
        self._lambda = in_lambda() if lambda_runtime is None else lambda_runtime
        self._write = write if write is not None else (_stdout if self._lambda else None)

    @cached_property
    def logger(self) -> Any:
        from aws_lambda_powertools import Logger  # on first use, not at import

        return Logger(service=SERVICE, stream=sys.stdout if self._lambda else sys.stderr)

    @cached_property
    def _metrics(self) -> Any:
        from aws_lambda_powertools.metrics import MetricUnit
        from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
            AmazonCloudWatchEMFProvider,
        )

        # A provider of our own (not the module-wide `Metrics` set another part may flush).
        return AmazonCloudWatchEMFProvider(namespace=NAMESPACE, service=SERVICE), MetricUnit.Count

    def stream_opened(self, keys: dict[str, str], open_streams: int) -> None:
        self.logger.info("stream opened", extra={**keys, "open_streams": open_streams})
        self._emit(OPEN_STREAMS, open_streams)

    def stream_refused(self, keys: dict[str, str], limit: int) -> None:
        self.logger.warning("stream refused: the tenant's open streams are at the cap", extra={**keys, "limit": limit})
        self._emit(STREAMS_REFUSED, 1)

    def stream_closed(self, keys: dict[str, str], seconds: float, reason: str) -> None:
        self.logger.info("stream closed", extra={**keys, "seconds": round(seconds, 3), "reason": reason})

    def _emit(self, name: str, value: float) -> None:
        if self._write is None:
            return
        import json

        provider, count = self._metrics
        provider.add_metric(name=name, unit=count, value=value)
        line = json.dumps(provider.serialize_metric_set(), separators=(",", ":"))
        provider.clear_metrics()
        self._write(line)


def _stdout(line: str) -> None:
    print(line, flush=True)  # EMF: CloudWatch Logs turns this line into metrics


@lru_cache(maxsize=1)
def default_telemetry() -> StreamTelemetry:
    return StreamTelemetry()
