"""The post-deploy smoke check (scripts/smoke.py) against `workflow-runs dev`: it passes on
a healthy server, and fails when a difference is injected between the server and it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from scripts import smoke
from tests.e2e.devserver import ROOT, DevServer

Rewrite = Callable[[httpx.Request, bytes], bytes]


class Tampering(httpx.BaseTransport):
    """Forwards to the real server and rewrites the body of the answers `rewrite` picks:
    what a broken deploy (a wrong integration, a proxy that buffers or cuts) would do."""

    def __init__(self, rewrite: Rewrite) -> None:
        self.inner = httpx.HTTPTransport()
        self.rewrite = rewrite

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = response.read()
        response.close()
        headers = [
            (k, v) for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding")
        ]
        return httpx.Response(response.status_code, headers=headers, content=self.rewrite(request, body))


def argv(server: DevServer) -> list[str]:
    return ["--url", f"{server.public}/api/v1/workflow-runs", "--token", server.token or "", "--timeout", "60"]


def on(path_end: str, old: bytes, new: bytes) -> Rewrite:
    def rewrite(request: httpx.Request, body: bytes) -> bytes:
        return body.replace(old, new) if request.url.path.endswith(path_end) else body

    return rewrite


def test_the_smoke_check_passes_against_the_dev_server(dev_server: DevServer):
    result = subprocess.run(
        [sys.executable, "-m", "scripts.smoke", *argv(dev_server)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"smoke: ok .* match \(\d+ events\)", result.stdout)


def test_an_untouched_pass_through_also_passes(dev_server: DevServer):
    """The tampering transport itself changes nothing unless told to."""
    assert smoke.run(argv(dev_server), transport=Tampering(lambda _r, body: body)) == 0


@pytest.mark.parametrize(
    ("rewrite", "says"),
    [
        # The streamed run produced something else than the blocking one.
        (on("/execute/stream", b"Hello, smoke!", b"Hello, smoke?"), "streamed outputs"),
        # The stream lost its closing event (cut by a timeout or a buffering proxy).
        (on("/execute/stream", b"event: result", b"event: lost"), "not result"),
        # The blocking answer differs from what the workflow must produce.
        (on("/execute", b"HELLO, SMOKE!", b"HELLO, SMOKE"), "blocking run outputs"),
        # The blocking run did not complete.
        (on("/execute", b'"status":"completed"', b'"status":"failed"'), "blocking run status"),
    ],
    ids=["stream-outputs", "stream-cut", "blocking-outputs", "blocking-status"],
)
def test_an_injected_difference_fails_the_smoke_check(dev_server: DevServer, rewrite: Rewrite, says: str, capsys):
    assert smoke.run(argv(dev_server), transport=Tampering(rewrite)) == 1
    assert says in capsys.readouterr().err


def test_an_unreachable_api_is_not_a_pass():
    assert smoke.run(["--url", "http://127.0.0.1:9/api/v1/workflow-runs", "--token", "t", "--timeout", "2"]) == 2


def test_a_url_that_is_not_the_runs_url_is_refused():
    assert smoke.run(["--url", "http://127.0.0.1:9/api/v1", "--token", "t"]) == 2
