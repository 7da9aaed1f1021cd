"""What the integration tests under moto's Step Functions interpreter share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from workflow_runs.settings import Settings, get_settings
from workflow_runs.store import dynamodb_client
from workflow_runs_step_runner import handler as step_runner


@pytest.fixture
def lambda_settings(local_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The step runner's Lambda environment, as the stack sets it (plus loopback allowed for
    the test's HTTP server); the real handler builds its collaborators from it."""
    env = {
        "RUNS_TABLE": local_settings.runs_table,
        "EVENTS_TABLE": local_settings.events_table,
        "DYNAMODB_ENDPOINT_URL": local_settings.dynamodb_endpoint_url,
        "LOCAL_SECRET_KEY": local_settings.local_secret_key,
        "HTTP_STEP_ALLOWED_HOSTS": "127.0.0.1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    dynamodb_client.cache_clear()
    step_runner.collaborators.cache_clear()
    # Built now, outside mock_aws: moto swaps the credentials in the environment, and DynamoDB
    # Local keeps one database per access key, so a client made inside the mock sees no tables.
    step_runner.collaborators()
    yield get_settings()
    get_settings.cache_clear()
    dynamodb_client.cache_clear()
    step_runner.collaborators.cache_clear()
