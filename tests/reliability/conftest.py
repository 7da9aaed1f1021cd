"""Fixtures of the reliability suites (DynamoDB Local comes from tests/conftest.py)."""

from __future__ import annotations

import pytest
from workflow_runs.settings import Settings
from workflow_runs.store import RunStore


@pytest.fixture
def race_store(local_settings: Settings) -> RunStore:
    """A store on fresh DynamoDB Local tables whose client pools enough connections for
    dozens of threads (the default pool of 10 would serialise the races it should show)."""
    import boto3
    from botocore.config import Config

    config = Config(max_pool_connections=128, retries={"mode": "standard", "max_attempts": 5})
    client = boto3.session.Session().client("dynamodb", endpoint_url=local_settings.dynamodb_endpoint_url,
                                            config=config)
    return RunStore(local_settings, client=client)


@pytest.fixture(scope="session")
def dev_runtime():
    """`workflow-runs dev` in this process (the product on one machine: its own DynamoDB Local,
    the local orchestrator running the real step runner, the stream poller feeding the real
    projector, both apps under uvicorn) on free loopback ports, with the examples loaded.

    Shared by the SSE, load, fuzzing and secrets suites; each uses its own workflows."""
    import os
    from pathlib import Path

    from workflow_runs_dev.dynamodb_local import free_port
    from workflow_runs_dev.runtime import LocalRuntime

    env = {
        **os.environ,
        # A short blocking execute keeps fuzzing bounded; pings often enough to appear in cut streams.
        "EXECUTE_WAIT_SECONDS": "3",
        "SSE_PING_SECONDS": "1",
        # The secrets suite's http step calls a server of its own on loopback.
        "HTTP_STEP_ALLOWED_HOSTS": "127.0.0.1",
    }
    examples = Path(__file__).resolve().parents[2] / "examples"
    runtime = LocalRuntime(port=free_port(), internal_port=free_port(), dynamodb="local", examples_dir=examples,
                           env=env, retry_interval_scale=0.001).start()
    try:
        yield runtime
    finally:
        runtime.stop()
