"""Synthesize the CDK app once per session, per stage, for every infra test.

The dependencies layer is synthesized from an empty placeholder folder, never from the
real build/deps: these tests check the template, not the wheels (which `make build`
installs and `make synth` refuses to miss), so they need no network and stay fast.
prod is synthesized with a VPC endpoint id so its private API exists; dev without.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `infra` is the repository's package, not an installed one
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

TEST_VPC_ENDPOINT_ID = "vpce-0a1b2c3d4e5f60718"
TEST_ACCOUNT = "123456789012"
TEST_REGION = "eu-west-1"
# prod has no issuer in cdk.json (it must be given at synth): tests give these.
PROD_ISSUER = {
    "jwtIssuer": "https://auth.acme-corp.net/",
    "jwtAudience": "workflow-runs",
    "jwksUrl": "https://auth.acme-corp.net/.well-known/jwks.json",
}
TEST_CORS_ORIGINS = ["https://app.acme-corp.net"]


@dataclass
class Synthesized:
    stage: str
    outdir: Path
    template: dict[str, Any]
    stack: Any

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{self.stack.stack_name}.template.json"

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.template["Resources"].items() if r["Type"] == resource_type}

    def assertions(self):
        from aws_cdk.assertions import Template

        return Template.from_json(self.template)


def stages_with(**overrides: dict[str, Any]) -> dict[str, Any]:
    from infra.config import STAGES_CONTEXT_KEY, cdk_json_context

    stages = cdk_json_context()[STAGES_CONTEXT_KEY]
    return {name: {**settings, **overrides.get(name, {})} for name, settings in stages.items()}


def synthesize(stage: str, outdir: Path, placeholder_deps: Path, **overrides: dict[str, Any]) -> Synthesized:
    import aws_cdk as cdk

    from infra.app import build_app
    from infra.config import STAGES_CONTEXT_KEY

    app, stack = build_app(
        stage=stage,
        context={STAGES_CONTEXT_KEY: stages_with(**overrides)},
        outdir=str(outdir),
        deps_layer_dir=placeholder_deps,
        env=cdk.Environment(account=TEST_ACCOUNT, region=TEST_REGION),
        context_file=None,  # a developer's cdk.context.json never changes what tests see
        environ={},
    )
    app.synth()  # raises when cdk-nag reports a finding nobody acknowledged
    template = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    return Synthesized(stage=stage, outdir=outdir, template=template, stack=stack)


@pytest.fixture(scope="session")
def placeholder_deps(tmp_path_factory) -> Path:
    deps = tmp_path_factory.mktemp("deps")
    (deps / "python").mkdir()
    (deps / "python" / "PLACEHOLDER.txt").write_text("tests synthesize without the real wheels\n")
    return deps


@pytest.fixture(scope="session")
def prod(tmp_path_factory, placeholder_deps) -> Synthesized:
    return synthesize(
        "prod",
        tmp_path_factory.mktemp("cdk-prod"),
        placeholder_deps,
        prod={"privateApiVpcEndpointId": TEST_VPC_ENDPOINT_ID, "corsAllowOrigins": TEST_CORS_ORIGINS, **PROD_ISSUER},
    )


@pytest.fixture(scope="session")
def dev(tmp_path_factory, placeholder_deps) -> Synthesized:
    return synthesize("dev", tmp_path_factory.mktemp("cdk-dev"), placeholder_deps)


@pytest.fixture(scope="session")
def vpc_endpoint_id() -> str:
    return TEST_VPC_ENDPOINT_ID
