"""The API app through FastAPI's TestClient, on moto's DynamoDB, with a dev identity and an
in-memory orchestrator fake that records what it was asked (the real orchestrators have their
own suites); and `lambda_env`, the API function's Lambda environment on moto, for the tests
that go through its handler with real API Gateway events (tests/api/lambda_events.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from workflow_runs.devkeys import DevIdentity
from workflow_runs.models import WorkflowDefinition
from workflow_runs.service import RunService
from workflow_runs.settings import get_settings
from workflow_runs.store import RunStore, dynamodb_client
from workflow_runs_api import handler as api_handler
from workflow_runs_api.app import create_app
from workflow_runs_dev.dynamodb_local import create_tables
from workflow_runs_http import dependencies

from tests.api.lambda_events import PRIVATE_API
from tests.auth_fixtures import AUDIENCE, ISSUER, TENANT_CLAIM
from tests.support import LOCAL_KEY


@dataclass
class RecordingOrchestrator:
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    fail_start: bool = False
    classes: dict[str, str] = field(default_factory=dict)
    callbacks: list[tuple[str, str, str]] = field(default_factory=list)

    def start(self, run_id: str, orchestration: str = "standard") -> None:
        if self.fail_start:
            raise RuntimeError("orchestrator down")
        if run_id not in self.started:
            self.started.append(run_id)
            self.classes[run_id] = orchestration

    def stop(self, run_id: str, reason: str | None = None, orchestration: str = "standard") -> bool:
        self.stopped.append(run_id)
        return run_id in self.started

    def describe(self, run_id: str) -> str | None:
        return "RUNNING" if run_id in self.started else None

    def send_task_success(self, token: str, output: str) -> None:
        self.callbacks.append(("success", token, output))

    def send_task_failure(self, token: str, error: str, cause: str) -> None:
        self.callbacks.append(("failure", token, error))


WORKFLOW = {
    "name": "Summarise",
    "inputs": [
        {"name": "topic", "type": "string", "required": True},
        {"name": "count", "type": "integer", "required": False, "default": 3},
    ],
    "steps": [{"id": "a", "type": "transform", "config": {"output": "{{ inputs.topic }}"}}],
}


@dataclass
class Api:
    client: TestClient
    identity: DevIdentity
    service: RunService
    store: RunStore
    orchestrator: RecordingOrchestrator

    def headers(self, tenant: str = "t1") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.identity.token(tenant=tenant)}"}

    def put_workflow(self, tenant: str = "t1", body: dict | None = None, workflow_id: str | None = None) -> str:
        workflow_id = workflow_id or str(uuid.uuid4())
        self.service.put_workflow(tenant, workflow_id, WorkflowDefinition.model_validate(body or WORKFLOW))
        return workflow_id


@pytest.fixture
def api(moto_store: RunStore, dev_identity: DevIdentity) -> Api:
    identity = dev_identity
    settings = identity.settings_for(moto_store.settings).model_copy(
        update={"execute_wait_seconds": 0.0, "max_body_bytes": 64 * 1024}
    )
    orchestrator = RecordingOrchestrator()
    service = RunService(moto_store, orchestrator, settings)
    app = create_app(settings=settings, service=service, verifier=identity.verifier(settings))
    return Api(TestClient(app), identity, service, moto_store, orchestrator)


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, jwks_server, signing_key) -> Iterator[None]:
    jwks_server.publish(signing_key)
    with mock_aws():
        machine = boto3.client("stepfunctions").create_state_machine(
            name="runs", roleArn="arn:aws:iam::123456789012:role/sfn",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        )["stateMachineArn"]
        express = boto3.client("stepfunctions").create_state_machine(
            name="runs-express", roleArn="arn:aws:iam::123456789012:role/sfn", type="EXPRESS",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        )["stateMachineArn"]
        env = {"RUNS_TABLE": "runs-table", "EVENTS_TABLE": "events-table", "STATE_MACHINE_ARN": machine,
               "EXPRESS_STATE_MACHINE_ARN": express,
               "PRIVATE_API_IDS": PRIVATE_API, "JWKS_URL": jwks_server.url, "JWT_ISSUER": ISSUER,
               "JWT_AUDIENCE": AUDIENCE, "JWT_TENANT_CLAIM": TENANT_CLAIM, "LOCAL_SECRET_KEY": LOCAL_KEY,
               "EXECUTE_WAIT_SECONDS": "0"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for cached in (get_settings, dynamodb_client, api_handler._adapter, dependencies._default_service):
            cached.cache_clear()
        create_tables(boto3.client("dynamodb"), "runs-table", "events-table")
        yield
        for cached in (get_settings, dynamodb_client, api_handler._adapter, dependencies._default_service):
            cached.cache_clear()
