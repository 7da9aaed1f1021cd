"""The CDK app: one stack for one stage.

    python -m infra.app [-c key=value …]   # make synth: stage from $STAGE (default dev) → cdk.out/
    npx cdk synth -c stage=prod -c jwtIssuer=https://…   # the CDK CLI runs this too (cdk.json "app")

The stage comes from the `stage` context value, else $STAGE, else dev; its settings from the
`workflow-runs:stages` context in cdk.json, overridden by cdk.context.json, WORKFLOW_RUNS_*
environment variables and `-c` (infra/config.py). cdk-nag's AwsSolutions checks run at
every synthesis as a validation plugin: a finding that is not acknowledged fails it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script (python infra/app.py): Python put infra/ first on sys.path, where
    # infra/constructs would shadow the `constructs` library. Put the repository there.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import (
    REPO_ROOT,
    STAGES_CONTEXT_KEY,
    ConfigError,
    StageConfig,
    cdk_context_json,
    cdk_json_context,
    merge_context,
    resolve_stage_config,
)
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
    context_file: Path | None = REPO_ROOT / "cdk.context.json",
    environ: Mapping[str, str] | None = None,
) -> tuple[cdk.App, WorkflowRunsStack]:
    """The app with its one stack and the cdk-nag plugin, not yet synthesized.

    Under the CDK CLI the context (cdk.json, cdk.context.json, -c) arrives through the
    environment; run directly, cdk.json and cdk.context.json are read here and `context`
    (the -c values) overrides them. WORKFLOW_RUNS_* variables of `environ` (default: the
    process environment) override the files, -c overrides everything.
    """
    environ = os.environ if environ is None else environ
    under_cli = "CDK_CONTEXT_JSON" in environ or "CDK_OUTDIR" in environ
    layers: list[Mapping[str, Any]] = []
    if not under_cli:
        layers.append(cdk_json_context())
        if context_file is not None:
            layers.append(cdk_context_json(context_file))
    layers.append(context or {})
    merged = merge_context(*layers)
    app = cdk.App(context=merged, outdir=outdir or (None if under_cli else str(REPO_ROOT / "cdk.out")))

    stage = stage or app.node.try_get_context("stage") or environ.get("STAGE") or DEFAULT_STAGE
    config = resolve_stage_config(app_context(app), stage, environ)
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


def app_context(app: cdk.App) -> dict[str, Any]:
    """The context values the stage settings read (the stages block and flat overrides)."""
    keys = [STAGES_CONTEXT_KEY, *StageConfig.known_settings()]
    return {key: value for key in keys if (value := app.node.try_get_context(key)) is not None}


def parse_context_args(argv: Sequence[str]) -> dict[str, str]:
    """`-c key=value` (repeatable), as the CDK CLI takes them."""
    parser = argparse.ArgumentParser(prog="python -m infra.app", description="Synthesize one stage into cdk.out/")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(list(argv))
    values: dict[str, str] = {}
    for item in args.context:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"-c takes KEY=VALUE, got {item!r}")
        values[key.strip()] = value
    return values


def main(argv: Sequence[str] | None = None) -> None:
    try:
        app, _ = build_app(context=parse_context_args(sys.argv[1:] if argv is None else argv))
    except ConfigError as error:
        raise SystemExit(f"infra: {error}") from None
    app.synth()


if __name__ == "__main__":
    main()
