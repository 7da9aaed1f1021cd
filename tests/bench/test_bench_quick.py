"""CI's proof that the benchmarks still run: `python -m bench --quick` end to end, in a
subprocess, and the report it writes has every section with figures. Nothing is timed here:
the figures of a quick run are not asserted (benchmarks are not tests), and neither is its
length: it has no time limit, so a busy machine makes it slower, never red."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_runs_dev.aws_calls import RECORD_ENV

from bench.__main__ import SECTIONS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.dynamodb_local, pytest.mark.slow, pytest.mark.timeout(0)]


def test_quick_bench_writes_a_report_with_every_section(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"

    # The benchmarks' tables and handlers are no deployment's: their calls are not the IAM
    # evaluation's (tests/infra/test_iam_calls.py) to judge.
    env = {name: value for name, value in os.environ.items() if name != RECORD_ENV}
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--output", str(report)], cwd=ROOT,
                          capture_output=True, text=True, check=False, env=env)

    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    assert text == done.stdout, "the report printed is the report written"
    for _, title in SECTIONS.values():
        number = title.split(".")[0]
        heading = re.search(rf"^## {number}\. .+$", text, re.MULTILINE)
        assert heading, f"section {title!r} is missing"
    assert "could not run" not in text, re.findall(r"could not run.*", text)
    # Every section produced at least one figure with a verdict (holds or MISSED).
    verdicts = re.findall(r"^\| .+ \| (holds|MISSED) \|$", text.split("## Machine")[0], re.MULTILINE)
    assert len(verdicts) >= len(SECTIONS)
    assert "| Python |" in text and "| DynamoDB Local |" in text
    # Every figure also lands in benchmarks.json, by a stable name, with its verdict.
    figures = json.loads(report.with_suffix(".json").read_text())["figures"]
    for name in ("wcu_per_run_1", "wcu_per_run_3", "wcu_per_run_10", "hottest_key_wcu_per_run",
                 "tenant_ceiling_runs_per_s", "list_page_rcu_depth_1", "list_page_rcu_depth_1000",
                 "usd_per_million_runs_3", "contention_lost_transitions", "contention_runs_per_s",
                 "execute_answer_lag_p50_ms", "execute_wait_reads_per_second",
                 "request_overhead_vs_powertools", "threads_started_per_invocation_by_the_shipped_handler",
                 "first_request_after_init_api", "first_request_after_init_step_runner",
                 "first_request_after_init_projector", "first_request_after_init_api_in_process",
                 "first_request_after_init_step_runner_in_process", "first_request_after_init_projector_in_process",
                 "first_request_control_boto3", "first_request_control_boto3_in_process", "lambda_init_api_vs_boto3",
                 "workflow_ceiling_runs_per_s", "deployment_ceiling_runs_per_s", "contention_retries_per_run_at_1000"):
        assert isinstance(figures[name]["value"], (int, float)), name
        assert set(figures[name]) >= {"value", "unit", "target", "holds"}
