"""The store on a DynamoDB that conflicts and throttles as AWS does under load (the write-path tests share it)."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from workflow_runs.settings import Settings
from workflow_runs.store import RunStore
from workflow_runs_dev.faults import FaultInjector


@pytest.fixture
def faulty(local_settings: Settings, dynamodb_local_endpoint: str):
    client = boto3.session.Session().client(
        "dynamodb", endpoint_url=dynamodb_local_endpoint,
        config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32))
    faults = FaultInjector(conflict_rate=0.4, throttle_rate=0.2, seed=11)
    faults.attach(client)
    store = RunStore(local_settings, client=client)
    store.db.sleep = lambda _: None  # the backoff's length is not the subject; its bound is
    yield store, faults
    faults.detach()
