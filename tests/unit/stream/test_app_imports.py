"""The stream app's cold start: importing it and building it loads no FastAPI, and leaves
pydantic, the service, PyJWT, boto3 and Powertools to the first request."""

from __future__ import annotations

import subprocess
import sys

DEFERRED = ("fastapi", "pydantic", "boto3", "jwt", "aws_lambda_powertools", "workflow_runs.service",
            "workflow_runs.settings", "workflow_runs.store", "workflow_runs.models")


def test_import_and_factory_load_only_starlette_and_our_light_modules():
    code = (
        "import sys\n"
        "from workflow_runs_stream.app import create_app\n"
        "app = create_app()\n"
        f"print(','.join(sorted(m for m in {DEFERRED!r} if m in sys.modules)))\n"
        "print('starlette' in sys.modules and 'sse_starlette' in sys.modules)\n"
    )
    # No settings in the environment: building the app must not read them.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""}, check=True)
    loaded, starlette = result.stdout.splitlines()
    assert loaded == ""
    assert starlette == "True"
