"""The CDK app: one stack for one stage.

    python -m infra.app              # make synth: stage from $STAGE (default dev) → cdk.out/
    npx cdk synth -c stage=prod      # the CDK CLI runs this too (cdk.json "app")

The stage comes from the `stage` context value, else $STAGE, else dev; its settings from the
`workflow-runs:stages` context in cdk.json. cdk-nag's AwsSolutions checks run at every
synthesis as a validation plugin: a finding that is not acknowledged fails it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script (python infra/app.py): Python put infra/ first on sys.path, where
    # infra/constructs would shadow the `constructs` library. Put the repository there.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import REPO_ROOT, STAGES_CONTEXT_KEY, cdk_json_context, stage_config
from infra.stack import WorkflowRunsStack

DEFAULT_STAGE = "dev"
DEPS_LAYER_DIR = REPO_ROOT / "build" / "deps"


class BuildMissing(RuntimeError):
    """The dependencies layer has not been built (run `make build`)."""


def stack_name(stage: str) -> str:
    return f"WorkflowRuns-{stage}"


def build_app(
    *,
    stage: str | None = None,
    context: Mapping[str, Any] | None = None,
    outdir: str | None = None,
    deps_layer_dir: Path = DEPS_LAYER_DIR,
    env: cdk.Environment | None = None,
) -> tuple[cdk.App, WorkflowRunsStack]:
    """The app with its one stack and the cdk-nag plugin, not yet synthesized.

    Under the CDK CLI the context (cdk.json + -c) arrives through the environment; run
    directly, cdk.json's context is read here and `context` overrides it.
    """
    under_cli = "CDK_CONTEXT_JSON" in os.environ or "CDK_OUTDIR" in os.environ
    merged: dict[str, Any] = {} if under_cli else cdk_json_context()
    merged.update(context or {})
    app = cdk.App(context=merged, outdir=outdir or (None if under_cli else str(REPO_ROOT / "cdk.out")))

    stage = stage or app.node.try_get_context("stage") or os.environ.get("STAGE") or DEFAULT_STAGE
    config = stage_config(app.node.try_get_context(STAGES_CONTEXT_KEY), stage)
    if not (deps_layer_dir / "python").is_dir():
        raise BuildMissing(f"{deps_layer_dir / 'python'} is missing: run `make build` first")
    if env is None:
        env = cdk.Environment(
            account=config.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=config.region or os.environ.get("CDK_DEFAULT_REGION"),
        )
    stack = WorkflowRunsStack(
        app,
        stack_name(stage),
        config=config,
        deps_layer_dir=deps_layer_dir,
        env=env,
        description=f"Workflow Runs API ({stage})",
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
