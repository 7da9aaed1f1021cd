"""The CI workflow: tests gate everything, pull requests get a `cdk diff`, prod deploys
only from main, and every deploy is followed by the smoke check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "deploy.yml"


@pytest.fixture(scope="module")
def jobs() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def run_lines(job: dict[str, Any]) -> list[str]:
    return [line.strip() for step in job["steps"] for line in str(step.get("run", "")).splitlines()]


def test_pull_requests_get_a_cdk_diff_of_both_stages(jobs):
    diff = jobs["diff"]
    assert "github.event_name == 'pull_request'" in diff["if"]
    assert diff["strategy"]["matrix"]["stage"] == ["dev", "prod"]
    assert any(line.startswith("make diff STAGE=${{ matrix.stage }}") for line in run_lines(diff))


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_deploys_run_only_on_main_after_the_tests_and_are_smoke_checked(jobs, stage):
    job = jobs[f"deploy-{stage}"]
    assert "github.ref == 'refs/heads/main'" in job["if"]
    assert "test" in ([job["needs"]] if isinstance(job["needs"], str) else job["needs"])
    lines = run_lines(job)
    deploy = next(i for i, line in enumerate(lines) if line.startswith(f"make deploy STAGE={stage}"))
    smoke = next(i for i, line in enumerate(lines) if line.endswith("make smoke"))
    assert deploy < smoke, "the smoke check runs after the deploy"
    assert any(f'["WorkflowRuns-{stage}"]["PublicApiUrl"]' in line for line in lines)
    # The stage's real issuer comes from the environment, never from an edited cdk.json.
    assert job["env"]["WORKFLOW_RUNS_JWT_ISSUER"] == "${{ vars.JWT_ISSUER }}"


def test_prod_waits_for_dev_and_uses_its_own_environment(jobs):
    job = jobs["deploy-prod"]
    assert "deploy-dev" in job["needs"] and job["environment"] == "prod"
