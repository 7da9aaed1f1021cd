"""Shared fixtures: AWS-free credentials, DynamoDB Local for the session, fresh tables per test,
and a run store parametrised over moto (unit) and DynamoDB Local (integration)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from workflow_runs.devkeys import DevIdentity
from workflow_runs.settings import Settings
from workflow_runs.store import RunStore
from workflow_runs_dev import aws_calls, dynamodb_local

from tests.support import dynamodb, finished_file, make_settings

# The JWT issuer's fixtures (jwks_server, signing_key, tokens, clock, verifier), for every suite.
pytest_plugins = ("tests.auth_fixtures",)

# Suites by what they need, so `make check` can leave out every test that starts a server or
# runs long (`-m "not dynamodb_local and not server and not browser and not slow"`), and
# `make test` still runs them all. A test is marked by its folder or by the fixtures it uses,
# never by hand in each module.
_SERVER_FOLDERS = {"e2e": "server", "docs": "server", "integration": "dynamodb_local"}
_SLOW_FOLDERS = {"reliability", "contention", "bench", "infra"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_root = Path(__file__).parent
    for item in items:
        folder = item.path.relative_to(tests_root).parts[0] if item.path.is_relative_to(tests_root) else ""
        if folder in _SERVER_FOLDERS:
            item.add_marker(_SERVER_FOLDERS[folder])
        if folder in _SLOW_FOLDERS:
            item.add_marker("slow")
        fixtures = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "dynamodb_local_endpoint" in fixtures or "dynamodb_local" in params.values():
            item.add_marker("dynamodb_local")
    # The IAM evaluation judges the calls every other suite recorded: it runs after them.
    items.sort(key=lambda item: item.get_closest_marker("after_all_suites") is not None)


@pytest.fixture(autouse=True, scope="session")
def _aws_credentials() -> None:
    # Tests never reach AWS: dummy credentials and a fixed region for every boto3 client.
    for name, value in dynamodb_local.DUMMY_CREDENTIALS.items():
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)


def pytest_configure(config: pytest.Config) -> None:
    # One file of recorded AWS calls for the whole run: this process, every `workflow-runs dev`
    # it starts and, under pytest-xdist (`make test` runs `-n 2`), every worker, which inherit
    # the environment the controller sets here before it starts them.
    if not hasattr(config, "workerinput") and not os.environ.get(aws_calls.RECORD_ENV):
        os.environ[aws_calls.RECORD_ENV] = str(Path(tempfile.mkdtemp(prefix="workflow-runs-calls-")) / "aws-calls.jsonl")


def pytest_runtest_logfinish(nodeid: str) -> None:
    # Each finished test, for the suites that judge what the others recorded (after_all_suites).
    path = os.environ.get(aws_calls.RECORD_ENV)
    if path:
        with open(finished_file(path), "a", encoding="utf-8") as finished:
            finished.write(nodeid + "\n")


@pytest.fixture(autouse=True, scope="session")
def aws_call_log() -> Iterator[str]:
    """Every AWS call a function makes in this run, as IAM requests (JSON lines, written by
    every test process and every `workflow-runs dev` they start); tests/infra/test_iam_calls.py
    judges them once every other test has finished."""
    path = os.environ[aws_calls.RECORD_ENV]
    aws_calls.from_environment()
    yield path


@pytest.fixture(scope="session")
def dev_identity() -> DevIdentity:
    """One dev signing key for the session: a 2048-bit RSA key costs a fifth of a second, and
    each test's verifier trusts only the key it was built from anyway."""
    return DevIdentity.generate()


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
    aws_calls.know(settings)
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
