"""`workflow-runs dev` for the end-to-end suites that need nothing but a running one, and the
KMS every dev server of the session uses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from workflow_runs_dev.dynamodb_local import free_port

from tests.e2e.devserver import DevServer
from tests.e2e.devserver import dev_server as start_dev_server


@pytest.fixture(scope="session")
def kms_server_keys() -> Iterator[dict[str, str]]:
    """The dev servers of this session seal envs and approval tokens and key fingerprints with
    KMS, as the stack does (a moto server in its own process stands for KMS), so the real
    KmsSealer's calls, encryption contexts included, are made and recorded (tests/infra/
    test_iam_calls.py judges them)."""
    import boto3

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    kms = boto3.session.Session().client("kms", endpoint_url=endpoint)
    deadline = time.monotonic() + 60
    while True:
        try:
            kms.list_keys()
            break
        except Exception:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.1)
    keys = {
        "ENVS_KMS_KEY_ID": kms.create_key(Description="envs")["KeyMetadata"]["Arn"],
        "TOKENS_KMS_KEY_ID": kms.create_key(Description="approval tokens")["KeyMetadata"]["Arn"],
        "FINGERPRINT_KMS_KEY_ID": kms.create_key(
            Description="fingerprints", KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"],
        "AWS_ENDPOINT_URL_KMS": endpoint,
    }
    try:
        yield keys
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(autouse=True, scope="module")
def kms_keys(kms_server_keys: dict[str, str]) -> Iterator[dict[str, str]]:
    """The KMS keys in the environment while an end-to-end module runs (its dev servers start
    with them), and only then: the suites after this folder seal with their own settings."""
    saved = {name: os.environ.get(name) for name in kms_server_keys}
    os.environ.update(kms_server_keys)
    try:
        yield kms_server_keys
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def dev_server() -> Iterator[DevServer]:
    """`workflow-runs dev` as a user starts it (its own signing key and dev token, the example
    workflows loaded); one per test module."""
    with start_dev_server(examples=True) as server:
        yield server
