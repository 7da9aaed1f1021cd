"""http: a real local server on 127.0.0.1, retry classification, and the SSRF guard."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from workflow_runs_step_runner.steps.base import StepError
from workflow_runs_step_runner.steps.http import MAX_BODY_BYTES, HttpStep, refusal_reason


class LocalServer:
    def __init__(self, tls: ssl.SSLContext | None = None):
        self.paths: list[str] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                outer.paths.append(url.path)
                length = int(self.headers.get("Content-Length") or 0)
                received = self.rfile.read(length).decode() if length else ""
                if url.path == "/json":
                    self._reply(200, b'{"ok": true, "items": [1, 2]}', "application/json",
                                {"Set-Cookie": "session=abc", "X-Request-Id": "r-1", "X-Internal": "no"})
                elif url.path == "/text":
                    self._reply(200, "tides \u00e9".encode(), "text/plain; charset=utf-8")
                elif url.path == "/echo":
                    self._reply(200, json.dumps({
                        "method": self.command, "host": self.headers.get("Host"), "body": received,
                        "authorization": self.headers.get("Authorization"),
                        "contentType": self.headers.get("Content-Type"), "x-token": self.headers.get("X-Token"),
                    }).encode(), "application/json")
                elif url.path.startswith("/status/"):
                    self._reply(int(url.path.rsplit("/", 1)[1]), b"status", "text/plain")
                elif url.path == "/slow":
                    outer.release.wait(10)
                    self._reply(200, b"late", "text/plain")
                elif url.path == "/redirect":
                    self._reply(int(query.get("code", "302")), b"", "text/plain", {"Location": query["to"]})
                elif url.path == "/loop":
                    self._reply(302, b"", "text/plain", {"Location": "/loop"})
                elif url.path == "/big":
                    self._reply(200, b"x" * (MAX_BODY_BYTES * 3), "text/plain")
                elif url.path == "/big-json":
                    self._reply(200, json.dumps(["y" * 1000] * 200).encode(), "application/json")
                else:
                    self._reply(404, b"no", "text/plain")

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    yield srv
    srv.close()


class FakeResolver:
    """Resolves names from a table and records every lookup; unknown names fail like DNS."""

    def __init__(self, table: dict[str, list[str]] | None = None):
        self.table = table or {}
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


def run_http(make_ctx, config, *, resolver=None, allowed=("127.0.0.1",), ssl_context=None, **ctx_args):
    ctx = make_ctx("http", config, http_step_allowed_hosts=tuple(allowed), **ctx_args)
    return HttpStep(resolver=resolver or FakeResolver(), ssl_context=ssl_context).run(ctx)


# --- against a real local server -------------------------------------------------------------


def test_get_json_is_decoded_with_a_safe_header_subset(make_ctx, server):
    outcome = run_http(make_ctx, {"url": server.url("/json")})
    assert outcome.outputs["statusCode"] == 200
    assert outcome.outputs["body"] == {"ok": True, "items": [1, 2]}
    assert outcome.outputs["truncated"] is False
    headers = outcome.outputs["headers"]
    assert headers["content-type"] == "application/json" and headers["x-request-id"] == "r-1"
    assert "set-cookie" not in headers and "x-internal" not in headers


def test_text_body_is_decoded_with_its_charset(make_ctx, server):
    assert run_http(make_ctx, {"url": server.url("/text")}).outputs["body"] == "tides \u00e9"


def test_url_headers_and_json_body_are_rendered_from_inputs_and_env(make_ctx, server):
    config = {"url": "{{ inputs.base }}/echo", "method": "post", "headers": {"X-Token": "{{ env.TOKEN }}"},
              "json": {"topic": "{{ inputs.topic }}", "n": "{{ inputs.n }}"}}
    outcome = run_http(make_ctx, config, inputs={"base": server.url(""), "topic": "tides", "n": 2},
                       env={"TOKEN": "s3cret"})
    echoed = outcome.outputs["body"]
    assert echoed["method"] == "POST" and echoed["x-token"] == "s3cret"
    assert json.loads(echoed["body"]) == {"topic": "tides", "n": 2}
    assert echoed["contentType"] == "application/json"


def test_string_body_is_sent_as_is(make_ctx, server):
    outcome = run_http(make_ctx, {"url": server.url("/echo"), "method": "PUT", "body": "raw {{ inputs.x }}",
                                  "headers": {"Content-Type": "text/plain"}}, inputs={"x": 1})
    assert outcome.outputs["body"]["body"] == "raw 1"


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_too_many_requests_are_retryable(make_ctx, server, status):
    with pytest.raises(StepError) as caught:
        run_http(make_ctx, {"url": server.url(f"/status/{status}")})
    assert caught.value.retryable is True
    assert f"answered {status}" in caught.value.message


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_are_not_retryable(make_ctx, server, status):
    with pytest.raises(StepError) as caught:
        run_http(make_ctx, {"url": server.url(f"/status/{status}")})
    assert caught.value.retryable is False
    assert f"answered {status}" in caught.value.message


def test_error_message_leaves_out_the_query_string(make_ctx, server):
    with pytest.raises(StepError) as caught:
        run_http(make_ctx, {"url": server.url("/status/404") + "?token=s3cret"})
    assert "s3cret" not in caught.value.message and "/status/404" in caught.value.message


def test_timeout_is_retryable(make_ctx, server):
    with pytest.raises(StepError) as caught:
        run_http(make_ctx, {"url": server.url("/slow"), "timeoutSeconds": 0.2})
    assert caught.value.retryable is True and "timed out" in caught.value.message


def test_default_timeout_comes_from_settings(make_ctx, server):
    with pytest.raises(StepError, match="timed out after 0.2s"):
        run_http(make_ctx, {"url": server.url("/slow")}, http_step_timeout_seconds=0.2)


def test_connection_refused_is_retryable(make_ctx):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StepError) as caught:
        run_http(make_ctx, {"url": f"http://127.0.0.1:{port}/"})
    assert caught.value.retryable is True


def test_unresolvable_host_is_retryable(make_ctx):
    with pytest.raises(StepError) as caught:
        run_http(make_ctx, {"url": "http://nowhere.test/"}, resolver=FakeResolver())
    assert caught.value.retryable is True and "could not resolve nowhere.test" in caught.value.message


def test_large_body_is_truncated_and_flagged(make_ctx, server):
    outputs = run_http(make_ctx, {"url": server.url("/big")}).outputs
    assert outputs["truncated"] is True
    assert outputs["body"] == "x" * MAX_BODY_BYTES


def test_truncated_json_is_kept_as_text(make_ctx, server):
    outputs = run_http(make_ctx, {"url": server.url("/big-json")}).outputs
    assert outputs["truncated"] is True and isinstance(outputs["body"], str)


def test_head_has_an_empty_body(make_ctx, server):
    outputs = run_http(make_ctx, {"url": server.url("/json"), "method": "HEAD"}).outputs
    assert outputs["statusCode"] == 200 and outputs["body"] == ""


def test_redirect_is_followed_through_the_guard(make_ctx, server):
    outputs = run_http(make_ctx, {"url": server.url("/redirect?to=/json")}).outputs
    assert outputs["body"] == {"ok": True, "items": [1, 2]}
    assert server.paths == ["/redirect", "/json"]


def test_303_turns_a_post_into_a_get_without_body(make_ctx, server):
    outputs = run_http(make_ctx, {"url": server.url("/redirect?code=303&to=/echo"), "method": "POST",
                                  "body": "payload"}).outputs
    assert outputs["body"]["method"] == "GET" and outputs["body"]["body"] == ""


def test_redirect_loop_stops_after_five_hops(make_ctx, server):
    with pytest.raises(StepError) as caught:
        run_http(make_ctx, {"url": server.url("/loop")})
    assert caught.value.retryable is False and "more than 5 redirects" in caught.value.message
    assert len(server.paths) == 6


def test_no_header_the_workflow_set_follows_a_redirect_to_another_host(make_ctx, server):
    resolver = FakeResolver({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    target = server.url("/echo", host="b.test")
    outputs = run_http(make_ctx, {"url": server.url(f"/redirect?to={target}", host="a.test"),
                                  "headers": {"Authorization": "Bearer s3cret", "X-Token": "t0k"},
                                  "followRedirects": True},
                       resolver=resolver, allowed=("a.test", "b.test")).outputs
    assert outputs["body"]["host"] == f"b.test:{server.port}"
    assert outputs["body"]["authorization"] is None and outputs["body"]["x-token"] is None


def test_connects_to_the_checked_address_with_the_original_host_header(make_ctx, server):
    # `pinned.test` exists only in the injected resolver: the request can only succeed if the
    # step connects to the address it resolved and checked, never resolving the name again.
    resolver = FakeResolver({"pinned.test": ["127.0.0.1"]})
    outputs = run_http(make_ctx, {"url": server.url("/echo", host="pinned.test")}, resolver=resolver,
                       allowed=("pinned.test",)).outputs
    assert outputs["body"]["host"] == f"pinned.test:{server.port}"
    assert resolver.calls == ["pinned.test"]


# --- the SSRF guard ----------------------------------------------------------------------------


@pytest.mark.parametrize("url, reason", [
    ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "a cloud metadata address"),
    ("http://127.0.0.1:9/", "a loopback address"),
    ("http://10.1.2.3/", "a private address"),
    ("http://192.168.0.10/", "a private address"),
    ("http://172.16.5.4/", "a private address"),
    ("http://[::1]/", "a loopback address"),
    ("http://[::ffff:127.0.0.1]/", "a loopback address (embedded in an IPv6 address)"),
    ("http://[::ffff:169.254.169.254]/", "a cloud metadata address"),
    ("http://[64:ff9b::a01:203]/", "a private address (embedded in an IPv6 address)"),
    ("http://0.0.0.0/", "an unspecified address"),
    ("http://169.254.10.10/", "a link-local address"),
    ("http://[fe80::1]/", "a link-local address"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://100.64.0.1/", "a non-public address"),
    # Python 3.11's `is_global` calls these global; neither is routable on the internet.
    ("http://[fec0::1]/", "a site-local address"),
    ("http://[fec0:ffff::10]/", "a site-local address"),
    ("http://[3fff::1]/", "a non-public address"),
    ("http://[3fff:fff:ffff::1]/", "a non-public address"),
    ("http://[2002:5db8:d822::1]/", "a non-public address"),  # 6to4, even of a public IPv4
    ("http://192.0.0.100/", "a non-public address"),
])
def test_refused_addresses_fail_without_retry_and_without_connecting(make_ctx, url, reason):
    resolver = FakeResolver()
    with pytest.raises(StepError) as caught:
        run_http(make_ctx, {"url": url}, resolver=resolver, allowed=())
    assert caught.value.retryable is False
    assert "refused" in caught.value.message and reason in caught.value.message
    assert "HTTP_STEP_ALLOWED_HOSTS" in caught.value.message
    assert resolver.calls == []  # an address literal is checked as it is


def test_loopback_is_refused_unless_allowed(make_ctx, server):
    with pytest.raises(StepError, match="refused: 127.0.0.1 is a loopback address"):
        run_http(make_ctx, {"url": server.url("/json")}, allowed=())
    assert server.paths == []


def test_hostname_resolving_to_a_private_address_is_refused(make_ctx):
    resolver = FakeResolver({"internal.example": ["10.0.0.5"]})
    with pytest.raises(StepError) as caught:
        run_http(make_ctx, {"url": "https://internal.example/admin"}, resolver=resolver, allowed=())
    assert caught.value.retryable is False
    assert "internal.example resolves to 10.0.0.5, which is a private address" in caught.value.message


def test_hostname_with_any_refused_address_is_refused(make_ctx):
    resolver = FakeResolver({"mixed.example": ["93.184.216.34", "127.0.0.1"]})
    with pytest.raises(StepError, match="resolves to 127.0.0.1"):
        run_http(make_ctx, {"url": "http://mixed.example/"}, resolver=resolver, allowed=())


def test_redirect_to_a_refused_address_is_refused(make_ctx, server):
    resolver = FakeResolver({"allowed.test": ["127.0.0.1"]})
    target = server.url("/json")  # 127.0.0.1 itself is not in the allowed hosts
    with pytest.raises(StepError) as caught:
        run_http(make_ctx, {"url": server.url(f"/redirect?to={target}", host="allowed.test"), "followRedirects": True},
                 resolver=resolver, allowed=("allowed.test",))
    assert caught.value.retryable is False and "127.0.0.1 is a loopback address" in caught.value.message
    assert server.paths == ["/redirect"]


@pytest.mark.parametrize("url", ["ftp://example.com/file", "file:///etc/passwd", "gopher://example.com/"])
def test_non_http_schemes_are_refused(make_ctx, url):
    with pytest.raises(StepError, match="refused URL") as caught:
        run_http(make_ctx, {"url": url})
    assert caught.value.retryable is False


def test_redirect_to_a_non_http_scheme_is_refused(make_ctx, server):
    with pytest.raises(StepError, match="refused redirect to scheme 'file'"):
        run_http(make_ctx, {"url": server.url("/redirect?to=file:///etc/passwd")})


def test_public_addresses_pass_the_guard():
    assert refusal_reason("93.184.216.34") is None
    assert refusal_reason("2606:2800:220:1:248:1893:25c8:1946") is None
    # Neighbours of the ranges refused beside the standard library's notion of global.
    assert refusal_reason("2001:4860:4860::8888") is None
    assert refusal_reason("3fff:1000::1") is None  # just past 3fff::/20
    assert refusal_reason("192.0.0.9") is None  # the one global address of 192.0.0.0/24


def test_a_hostname_resolving_into_fec0_or_3fff_is_refused(make_ctx):
    resolver = FakeResolver({"site.example": ["2606:2800:220:1::1", "fec0::5"], "doc.example": ["3fff::8"]})
    for host, address in (("site.example", "fec0::5"), ("doc.example", "3fff::8")):
        with pytest.raises(StepError) as caught:
            run_http(make_ctx, {"url": f"http://{host}/"}, resolver=resolver, allowed=())
        assert caught.value.retryable is False
        assert f"{host} resolves to {address}" in caught.value.message


# --- TLS: SNI and certificate checks use the original name ------------------------------------


def _tls_pair(tmp_path, hostname: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server_ctx, client_ctx


def test_https_sends_sni_and_verifies_the_certificate_for_the_original_name(make_ctx, tmp_path):
    server_ctx, client_ctx = _tls_pair(tmp_path, "secure.test")
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    srv = LocalServer(tls=server_ctx)
    try:
        resolver = FakeResolver({"secure.test": ["127.0.0.1"]})
        outputs = run_http(make_ctx, {"url": srv.url("/json", host="secure.test", scheme="https")},
                           resolver=resolver, allowed=("secure.test",), ssl_context=client_ctx).outputs
    finally:
        srv.close()
    assert outputs["body"] == {"ok": True, "items": [1, 2]}
    assert seen_sni == ["secure.test"]


def test_https_to_a_name_the_certificate_does_not_cover_fails(make_ctx, tmp_path):
    server_ctx, client_ctx = _tls_pair(tmp_path, "secure.test")
    srv = LocalServer(tls=server_ctx)
    try:
        resolver = FakeResolver({"other.test": ["127.0.0.1"]})
        with pytest.raises(StepError, match="ConnectError"):
            run_http(make_ctx, {"url": srv.url("/json", host="other.test", scheme="https")},
                     resolver=resolver, allowed=("other.test",), ssl_context=client_ctx)
    finally:
        srv.close()


def test_ipaddress_literals_in_the_parametrised_cases_are_what_they_claim():
    # Guards the table above against typos: each literal parses as an address.
    for literal in ("169.254.169.254", "fd00:ec2::254", "64:ff9b::a01:203"):
        ipaddress.ip_address(literal)
