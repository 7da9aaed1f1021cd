"""The API app through FastAPI's TestClient, on moto's DynamoDB, with a dev identity and an
in-memory orchestrator fake that records what it was asked (the real orchestrators have their
own suites)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from workflow_runs.devkeys import DevIdentity
from workflow_runs.models import WorkflowDefinition
from workflow_runs.service import RunService
from workflow_runs.store import RunStore
from workflow_runs_api.app import create_app


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
def api(moto_store: RunStore) -> Api:
    identity = DevIdentity.generate()
    settings = identity.settings_for(moto_store.settings).model_copy(
        update={"execute_wait_seconds": 0.0, "max_body_bytes": 64 * 1024}
    )
    orchestrator = RecordingOrchestrator()
    service = RunService(moto_store, orchestrator, settings)
    app = create_app(settings=settings, service=service, verifier=identity.verifier(settings))
    return Api(TestClient(app), identity, service, moto_store, orchestrator)
