"""The contention suite's runtime: `workflow-runs dev` in this process, on the session's DynamoDB
Local (fresh tables), with the fault injector between it and DynamoDB."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from workflow_runs_dev.dynamodb_local import free_port
from workflow_runs_dev.faults import FaultInjector
from workflow_runs_dev.runtime import LocalRuntime

# What AWS under load does to a busy tenant (see the test module's docstring).
CONFLICT_RATE = 0.2
THROTTLE_RATE = 0.1
SEED = 7


@pytest.fixture(scope="module")
def contended_runtime(dynamodb_local_endpoint: str) -> Iterator[LocalRuntime]:
    suffix = uuid.uuid4().hex[:10]
    env = {
        "RUNS_TABLE": f"runs-{suffix}",
        "EVENTS_TABLE": f"events-{suffix}",
        # Execute answers at once (202): runs are started without a thread held per run.
        "EXECUTE_WAIT_SECONDS": "0",
        # Pings often enough that a replay which never closes is noticed within a second.
        "SSE_PING_SECONDS": "1",
    }
    faults = FaultInjector(conflict_rate=CONFLICT_RATE, throttle_rate=THROTTLE_RATE, seed=SEED)
    # The projector's event-log writes are spared (a client of its own): one poller thread
    # projects every run, and botocore's backoff after each throttled write (up to a second the
    # first time) would hold the log minutes behind. Its failing writes are tests/reliability's.
    runtime = LocalRuntime(port=free_port(), internal_port=free_port(), dynamodb_endpoint=dynamodb_local_endpoint,
                           faults=faults, projector_faults=False, env=env, retry_interval_scale=0.001).start()
    try:
        yield runtime
    finally:
        runtime.stop()
