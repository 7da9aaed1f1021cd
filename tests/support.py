"""Helpers the test suites share (fixtures live in conftest.py)."""

from __future__ import annotations

import base64
import functools
import http.server
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
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


@functools.cache
def _session() -> boto3.session.Session:
    # One session for every test's client: a new session loads DynamoDB's service model again
    # (most of a client's cost); clients made from one session are still separate clients.
    return boto3.session.Session()


def dynamodb(endpoint_url: str | None):
    # Seen by the IAM recorder as the functions' own clients are (workflow_runs.aws_clients).
    from workflow_runs import aws_clients

    # The credentials and region as the environment has them now: a session resolves its
    # credentials once, and a session first used inside moto's mock_aws (which sets its own keys)
    # would otherwise keep them, and DynamoDB Local keeps each key's tables apart.
    return aws_clients.observed(_session().client(
        "dynamodb", endpoint_url=endpoint_url,
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN")))


class ScriptedServer:
    """A loopback HTTP server answering the status codes of its script, the last one forever."""

    def __init__(self, *statuses: int):
        self.statuses = list(statuses)
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                status = server.statuses.pop(0) if len(server.statuses) > 1 else server.statuses[0]
                body = b'{"ok": true}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/ping"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def finished_file(record: str) -> Path:
    return Path(record + ".finished")


def wait_for_every_other_test(session: pytest.Session, record: str, stalled_seconds: float = 600) -> None:
    """Until every selected test that is not `after_all_suites` has finished, on this worker or
    another (alone, they finished before: they are sorted first). Fails when none has finished
    for `stalled_seconds` (a test queued behind this one on this worker would never start: the
    Makefile keeps xdist's scopes in collection order, where these tests come last)."""
    others = {item.nodeid for item in session.items if item.get_closest_marker("after_all_suites") is None}
    path = finished_file(record)
    left, moved = len(others), time.monotonic()
    while True:
        missing = others - set(path.read_text(encoding="utf-8").splitlines() if path.exists() else ())
        if not missing:
            return
        if len(missing) < left:
            left, moved = len(missing), time.monotonic()
        elif time.monotonic() - moved > stalled_seconds:
            pytest.fail(f"{len(missing)} tests have not finished, none for {stalled_seconds:g} s: {sorted(missing)[:5]}")
        time.sleep(1)
