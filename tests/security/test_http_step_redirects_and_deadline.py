"""Threats in the `http` step: a redirect to another origin carried every header the workflow
set (all but three) and its body; https redirected to http; and a server trickling its
header lines stretched a 2-second step to many times that (each read had its own timeout)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from workflow_runs.models import WorkflowDefinition
from workflow_runs_step_runner.steps.base import StepError

from tests.unit.step_runner.test_http import FakeResolver, LocalServer, _tls_pair, run_http


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    yield srv
    srv.close()


TWO_HOSTS = {"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]}


def cross_origin(server: LocalServer, code: int = 302) -> str:
    return server.url(f"/redirect?code={code}&to={server.url('/echo', host='b.test')}", host="a.test")


def test_leaving_the_origin_drops_every_header_the_workflow_set_and_the_body(make_ctx, server):
    outputs = run_http(make_ctx, {"url": cross_origin(server, 301), "method": "PUT", "body": "secret payload",
                                  "headers": {"X-Token": "t0k", "Authorization": "Bearer s3cret",
                                              "Content-Type": "text/plain"},
                                  "followRedirects": True},
                       resolver=FakeResolver(TWO_HOSTS), allowed=("a.test", "b.test")).outputs
    echoed = outputs["body"]
    assert echoed["host"] == f"b.test:{server.port}" and echoed["method"] == "PUT"
    assert (echoed["x-token"], echoed["authorization"], echoed["contentType"], echoed["body"]) == (None, None, None, "")


def test_a_307_with_a_body_to_another_origin_is_refused_rather_than_sent_without_it(make_ctx, server):
    with pytest.raises(StepError, match="refused to send the request body to another origin") as caught:
        run_http(make_ctx, {"url": cross_origin(server, 307), "method": "POST", "json": {"a": 1},
                            "followRedirects": True},
                 resolver=FakeResolver(TWO_HOSTS), allowed=("a.test", "b.test"))
    assert caught.value.retryable is False and server.paths == ["/redirect"]


def test_within_the_origin_headers_and_body_still_follow(make_ctx, server):
    outputs = run_http(make_ctx, {"url": server.url("/redirect?code=307&to=/echo"), "method": "POST",
                                  "body": "payload", "headers": {"X-Token": "t0k"}}).outputs
    assert outputs["body"]["x-token"] == "t0k" and outputs["body"]["body"] == "payload"


def test_by_default_a_redirect_to_another_origin_is_the_answer_not_followed(make_ctx, server):
    outputs = run_http(make_ctx, {"url": cross_origin(server), "headers": {"X-Token": "t0k"}},
                       resolver=FakeResolver(TWO_HOSTS), allowed=("a.test", "b.test")).outputs
    assert outputs["statusCode"] == 302
    assert outputs["headers"]["location"] == server.url("/echo", host="b.test")
    assert server.paths == ["/redirect"]


def test_follow_redirects_false_follows_none(make_ctx, server):
    outputs = run_http(make_ctx, {"url": server.url("/redirect?to=/json"), "followRedirects": False}).outputs
    assert outputs["statusCode"] == 302 and server.paths == ["/redirect"]


def test_follow_redirects_takes_only_its_three_values():
    step = {"id": "h", "type": "http", "config": {"url": "https://example.com/", "followRedirects": "always"}}
    with pytest.raises(ValueError, match="followRedirects must be true, false or 'same-origin'"):
        WorkflowDefinition.model_validate({"name": "w", "steps": [step]})
    for value in (True, False, "same-origin"):
        WorkflowDefinition.model_validate({"name": "w", "steps": [{**step, "config": {**step["config"],
                                                                                     "followRedirects": value}}]})


def test_https_never_redirects_to_http(make_ctx, tmp_path, server):
    server_ctx, client_ctx = _tls_pair(tmp_path, "secure.test")
    tls = LocalServer(tls=server_ctx)
    try:
        downgrade = tls.url(f"/redirect?to={server.url('/json', host='secure.test')}", host="secure.test",
                            scheme="https")
        with pytest.raises(StepError, match="refused a redirect from https to http") as caught:
            run_http(make_ctx, {"url": downgrade, "followRedirects": True},
                     resolver=FakeResolver({"secure.test": ["127.0.0.1"]}), allowed=("secure.test",),
                     ssl_context=client_ctx)
    finally:
        tls.close()
    assert caught.value.retryable is False and server.paths == []


class TricklingServer:
    """Answers with a status line, then one header line every `interval` seconds: each read
    completes well within a read timeout, the whole never does."""

    def __init__(self, interval: float = 0.25, lines: int = 40):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.interval, self.lines = interval, lines
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for i in range(self.lines):
                if self.stop.wait(self.interval):
                    return
                try:
                    conn.sendall(b"X-Slow-%d: x\r\n" % i)
                except OSError:
                    return
            conn.sendall(b"Content-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_one_deadline_bounds_the_whole_exchange_even_when_headers_trickle(make_ctx):
    slow = TricklingServer()
    try:
        started = time.monotonic()
        with pytest.raises(StepError, match="timed out after 1s") as caught:
            run_http(make_ctx, {"url": f"http://127.0.0.1:{slow.port}/", "timeoutSeconds": 1})
        elapsed = time.monotonic() - started
    finally:
        slow.close()
    assert caught.value.retryable is True
    assert elapsed < 1.8, f"the step took {elapsed:.1f}s with a 1s timeout"


def test_the_deadline_covers_a_name_lookup_that_hangs(make_ctx):
    def hanging_resolver(host: str, port: int) -> list[str]:
        time.sleep(3)
        return ["127.0.0.1"]

    started = time.monotonic()
    with pytest.raises(StepError, match="timed out after 0.5s"):
        run_http(make_ctx, {"url": "http://slow-dns.test/", "timeoutSeconds": 0.5}, resolver=hanging_resolver,
                 allowed=("slow-dns.test",))
    assert time.monotonic() - started < 1.5
