"""The domain package never imports a web framework, and importing it starts nothing."""

from __future__ import annotations

import subprocess
import sys

DOMAIN_MODULES = ["workflow_runs", "workflow_runs.models", "workflow_runs.keys", "workflow_runs.store",
                  "workflow_runs.service", "workflow_runs.auth", "workflow_runs.secrets", "workflow_runs.settings",
                  "workflow_runs.orchestrator", "workflow_runs.errors", "workflow_runs.devkeys"]


def test_domain_modules_import_no_web_framework_and_no_aws_client():
    code = (
        "import sys\n"
        f"for name in {DOMAIN_MODULES!r}: __import__(name)\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'boto3'))))\n"
    )
    # No settings in the environment: importing must not read them (no import-time side effects).
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""}, check=True)
    assert result.stdout.strip() == ""
