#!/bin/bash
# Handler of the stream function. The Lambda Web Adapter layer (AWS_LAMBDA_EXEC_WRAPPER=
# /opt/bootstrap, AWS_LWA_INVOKE_MODE=response_stream, AWS_LWA_READINESS_CHECK_PATH=/health)
# runs this script, waits for /health, then proxies each invocation to uvicorn and streams
# the response back. The code sits in the task root, the common package and the third-party
# wheels in layers (/opt/python). uvicorn listens on loopback only: the adapter (which
# connects to 127.0.0.1) must be the one way in, or its x-amzn-request-context header could
# not be trusted (docs/security.md).
PATH=$PATH:$LAMBDA_TASK_ROOT/bin \
    PYTHONPATH=$LAMBDA_TASK_ROOT:/opt/python:$LAMBDA_RUNTIME_DIR:$PYTHONPATH \
    exec python -m uvicorn --host 127.0.0.1 --port="${PORT:-8080}" \
        --factory workflow_runs_stream.app:create_app
