"""Shared fixtures: AWS-free credentials, DynamoDB Local for the session, fresh tables per test,
and a run store parametrised over moto (unit) and DynamoDB Local (integration)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from workflow_runs.settings import Settings
from workflow_runs.store import RunStore
from workflow_runs_dev import dynamodb_local

from tests.support import dynamodb, make_settings

# The JWT issuer's fixtures (jwks_server, signing_key, tokens, clock, verifier), for every suite.
pytest_plugins = ("tests.auth_fixtures",)


@pytest.fixture(autouse=True, scope="session")
def _aws_credentials() -> None:
    # Tests never reach AWS: dummy credentials and a fixed region for every boto3 client.
    for name, value in dynamodb_local.DUMMY_CREDENTIALS.items():
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def dynamodb_local_endpoint() -> Iterator[str]:
    db = dynamodb_local.start_dynamodb_local()
    yield db.endpoint_url
    db.stop()


@pytest.fixture
def local_settings(dynamodb_local_endpoint: str) -> Settings:
    """Settings pointing at fresh tables on DynamoDB Local."""
    settings = make_settings(dynamodb_local_endpoint)
    dynamodb_local.create_tables(dynamodb(dynamodb_local_endpoint), settings.runs_table, settings.events_table)
    return settings


@pytest.fixture
def local_store(local_settings: Settings) -> RunStore:
    return RunStore(local_settings, client=dynamodb(local_settings.dynamodb_endpoint_url))


@pytest.fixture
def moto_store() -> Iterator[RunStore]:
    from moto import mock_aws

    with mock_aws():
        settings = make_settings(None)
        client = dynamodb(None)
        dynamodb_local.create_tables(client, settings.runs_table, settings.events_table)
        yield RunStore(settings, client=client)


@pytest.fixture(params=["moto", "dynamodb_local"])
def store(request: pytest.FixtureRequest) -> RunStore:
    """The store suite runs on both backends and must pass on both."""
    if request.param == "moto":
        return request.getfixturevalue("moto_store")
    return request.getfixturevalue("local_store")
