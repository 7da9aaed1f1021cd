"""Helpers the test suites share (fixtures live in conftest.py)."""

from __future__ import annotations

import base64
import uuid

import boto3

from workflow_runs.settings import Settings

LOCAL_KEY = base64.b64encode(b"k" * 32).decode()


def make_settings(endpoint_url: str | None, **overrides) -> Settings:
    suffix = uuid.uuid4().hex[:10]
    values = {
        "runs_table": f"runs-{suffix}",
        "events_table": f"events-{suffix}",
        "dynamodb_endpoint_url": endpoint_url,
        "local_secret_key": LOCAL_KEY,
        **overrides,
    }
    return Settings(**values)


def dynamodb(endpoint_url: str | None):
    return boto3.session.Session().client("dynamodb", endpoint_url=endpoint_url)
