"""The gates a template passes before it may deploy: cdk-nag (at synthesis), cfn-lint,
and asl-validator on the state machine rendered from the template."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:{}"


# --- cdk-nag ------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_synthesis_leaves_no_cdk_nag_finding_unacknowledged(stage, request):
    synth = request.getfixturevalue(stage)  # synthesis itself raises on an open finding
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == []


def test_every_acknowledgment_names_an_aws_solutions_finding_and_a_specific_reason(prod):
    from aws_cdk import Validations

    acknowledged: dict[str, str] = {}  # metadata data: {"Annotation::<rule id>": reason}
    for construct in prod.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                acknowledged.update({key.split("::", 1)[1]: reason for key, reason in entry.data.items()})
    assert acknowledged, "cdk-nag acknowledgments are expected (X-Ray, grants, API auth in the app)"
    for rule, reason in acknowledged.items():
        assert re.fullmatch(r"AwsSolutions-[A-Z]+\d+(\[.+\])?", rule), rule
        assert len(reason) >= 40, f"reason too thin for {rule}: {reason!r}"
    # IAM5 wildcards are acknowledged one granular finding at a time, never wholesale.
    assert "AwsSolutions-IAM5" not in acknowledged


def test_an_unacknowledged_finding_fails_synthesis(tmp_path, placeholder_deps):
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs

    from infra.app import build_app

    app, stack = build_app(
        stage="dev",
        outdir=str(tmp_path),
        deps_layer_dir=placeholder_deps,
        env=cdk.Environment(account="123456789012", region="eu-west-1"),
    )
    sqs.Queue(stack, "NoTlsNoDeadLetters")  # AwsSolutions-SQS3 and -SQS4
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for plugin in report["pluginReports"] for v in plugin["violations"]}
    assert {"AwsSolutions-SQS3", "AwsSolutions-SQS4"} <= rules


# --- cfn-lint ------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_cfn_lint_reports_no_errors(stage, request):
    synth = request.getfixturevalue(stage)
    cfn_lint = Path(sys.executable).with_name("cfn-lint")  # the venv's console script
    result = subprocess.run(
        [str(cfn_lint), str(synth.template_path), "--format", "json"],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # Exit status is a bit mask (2 errors, 4 warnings, 8 informational); read the findings.
    assert result.stdout.strip(), result.stderr
    findings = json.loads(result.stdout)
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == [], json.dumps(errors, indent=2)


# --- the state machine -------------------------------------------------------------------


def render_definition(synth) -> dict[str, Any]:
    """The ASL the deployed machines run: Standard and Express, one definition."""
    by_type = {
        m["Properties"]["StateMachineType"]: m for m in synth.resources("AWS::StepFunctions::StateMachine").values()
    }
    assert sorted(by_type) == ["EXPRESS", "STANDARD"]
    standard, express = (render_machine(synth, by_type[kind]) for kind in ("STANDARD", "EXPRESS"))
    assert standard == express, "both run classes must run the same definition"
    return standard


def render_machine(synth, machine: dict[str, Any]) -> dict[str, Any]:
    """One machine's ASL: the definition (inline or the S3 asset CDK wrote) with every
    Fn::Join / ${Substitution} resolved to placeholder ARNs."""
    props = machine["Properties"]
    if "DefinitionS3Location" in props:
        text = (synth.outdir / f"asset.{props['DefinitionS3Location']['Key']}").read_text()
    else:
        text = _resolve(props["DefinitionString"])
    for name, value in props.get("DefinitionSubstitutions", {}).items():
        text = text.replace("${" + name + "}", _resolve(value))
    return json.loads(text)


def _resolve(value: Any) -> str:
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_resolve(p) for p in parts)
    if "Fn::GetAtt" in value:
        return PLACEHOLDER_ARN.format(value["Fn::GetAtt"][0])
    if "Ref" in value:
        return {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}.get(
            value["Ref"], PLACEHOLDER_ARN.format(value["Ref"])
        )
    raise AssertionError(f"cannot render {value}")


def test_rendered_state_machine_is_valid_asl_calling_the_step_runner(prod, tmp_path):
    definition = render_definition(prod)
    rendered = json.dumps(definition)
    assert "${" not in rendered, "a substitution was left unresolved"
    step_runner = next(
        k
        for k, r in prod.resources("AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == "workflow_runs_step_runner.handler.handler"
    )
    # Every task (run a step, fail the run, park and time out an approval) invokes the step
    # runner's `live` alias (its published, SnapStart version).
    (alias,) = [
        k
        for k, r in prod.resources("AWS::Lambda::Alias").items()
        if r["Properties"]["FunctionName"] == {"Ref": step_runner}
    ]
    tasks = [s for s in definition["States"].values() if s.get("Resource", "").startswith("arn:aws:states:::lambda:invoke")]
    assert sorted(t["Resource"].rsplit(":", 1)[1] for t in tasks) == ["invoke"] * 3 + ["invoke.waitForTaskToken"]
    assert {t["Parameters"]["FunctionName"] for t in tasks} == {PLACEHOLDER_ARN.format(alias)}
    assert PLACEHOLDER_ARN.format(step_runner) not in rendered

    path = tmp_path / "state_machine.json"
    path.write_text(rendered)
    result = subprocess.run(
        ["npx", "--no-install", "asl-validator", "--json-path", str(path)],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


# --- checkov ------------------------------------------------------------------------------

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"  # its own venv (make install)


def run_checkov(template: Path) -> dict[str, Any]:
    assert CHECKOV.is_file(), "checkov is missing: run `make install` (it installs .venv-checkov)"
    result = subprocess.run(
        [str(CHECKOV), "--file", str(template), "--framework", "cloudformation", "--output", "json",
         "--quiet", "--compact", "--skip-download"],  # --skip-download: no calls home, offline
        check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_checkov_reports_no_failed_check_and_every_skip_has_its_reason_in_the_resource(stage, request):
    synth = request.getfixturevalue(stage)
    report = run_checkov(synth.template_path)
    failed = [(c["check_id"], c["resource"]) for c in report["results"].get("failed_checks", [])]
    assert report["summary"]["parsing_errors"] == 0
    assert failed == [], failed
    assert report["summary"]["passed"] > 100, "checkov must have looked at the template"
    # Every skip sits in the Metadata of the resource it concerns, with a real reason.
    skips = {
        logical_id: resource["Metadata"]["checkov"]["skip"]
        for logical_id, resource in synth.template["Resources"].items()
        if "checkov" in resource.get("Metadata", {})
    }
    assert report["summary"]["skipped"] == sum(len(s) for s in skips.values())
    for logical_id, entries in skips.items():
        for entry in entries:
            assert re.fullmatch(r"CKV_AWS_\d+", entry["id"]), (logical_id, entry)
            assert len(entry["comment"]) >= 60, (logical_id, entry)


def test_checkov_fails_an_unjustified_finding(dev, tmp_path):
    """The gate can fail: an unencrypted log group without a skip is reported."""
    template = json.loads(dev.template_path.read_text())
    template["Resources"]["PlainLogGroup"] = {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 7}}
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template))
    failed = {(c["check_id"], c["resource"]) for c in run_checkov(path)["results"].get("failed_checks", [])}
    assert ("CKV_AWS_158", "AWS::Logs::LogGroup.PlainLogGroup") in failed


def test_every_log_group_is_encrypted_with_the_logs_key(prod):
    groups = prod.resources("AWS::Logs::LogGroup")
    assert len(groups) >= 9  # five functions, two state machines, two APIs' access logs
    keys_used = {json.dumps(g["Properties"]["KmsKeyId"], sort_keys=True) for g in groups.values()}
    assert len(keys_used) == 1, "one key for every log group"
