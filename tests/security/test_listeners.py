"""Threat: listeners that trust more than they should be reachable by. `workflow-runs dev
--host 0.0.0.0` moved the internal listener (which believes `X-Tenant-Id`) onto the network
with the public one; and the stream function's uvicorn listened on every interface, where
only the Lambda Web Adapter (on loopback) may reach it. Issue 28: both listeners answered any
`Host` (DNS rebinding), and `CORS_ALLOW_ORIGINS=*` from the environment was accepted."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from workflow_runs_dev.cli import banner, build_parser
from workflow_runs_dev.dynamodb_local import free_port
from workflow_runs_dev.runtime import INTERNAL_HOST, LocalRuntime

ROOT = Path(__file__).resolve().parents[2]


async def _app(scope, receive, send) -> None:  # a listener's app is not what is under test
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_the_internal_listener_binds_to_loopback_whatever_host_says():
    runtime = LocalRuntime(host="0.0.0.0", port=free_port(), internal_port=free_port())
    try:
        runtime.listen(_app, _app)
        public, internal = ({s.getsockname()[0] for srv in server.servers for s in srv.sockets}
                            for server in runtime._servers)
    finally:
        runtime.stop()
    assert public == {"0.0.0.0"}
    assert internal == {"127.0.0.1"} == {INTERNAL_HOST}
    assert runtime.internal_url == f"http://127.0.0.1:{runtime.internal_port}"


def test_the_dev_server_says_so_at_start_and_in_its_help():
    settings = SimpleNamespace(runs_table="runs", events_table="events", orchestration="auto")
    runtime = SimpleNamespace(db_kind="moto", public_url="http://0.0.0.0:8000", internal_url="http://127.0.0.1:8001",
                              loaded_examples=[], token=None, settings=settings, tables_created=["runs"], faults=None,
                              dynamodb_url="http://127.0.0.1:8002")
    assert "internal listener: http://127.0.0.1:8001   (trusted; send X-Tenant-Id; loopback only, whatever " \
           "--host says)" in banner(runtime)
    assert "ORCHESTRATION=auto" in banner(runtime)
    dev = build_parser()._subparsers._group_actions[0].choices["dev"]
    assert "the internal one is always 127.0.0.1" in " ".join(dev.format_help().split())


def test_the_stream_functions_uvicorn_listens_on_loopback_behind_the_adapter():
    script = (ROOT / "functions" / "stream" / "run.sh").read_text()
    command = script[script.index("exec python -m uvicorn"):]
    assert "--host 127.0.0.1" in command and "0.0.0.0" not in script


# --- issue 28: DNS rebinding and `*` origins ---------------------------------------------------
# A page of rebind.attacker.example (its name re-pointed at 127.0.0.1) calls the dev server as
# its own origin; the browser cannot change `Host`, which still names the attacker.


def _listening(host: str = "127.0.0.1") -> LocalRuntime:
    runtime = LocalRuntime(host=host, port=free_port(), internal_port=free_port())
    runtime.listen(_app, _app)
    return runtime


def _status(port: int, host_header: str | None) -> int:
    headers = {} if host_header is None else {"Host": host_header}
    with httpx.Client() as client:
        return client.get(f"http://127.0.0.1:{port}/api/v1/workflow-runs", headers=headers).status_code


def test_both_listeners_refuse_a_host_that_does_not_name_them():
    runtime = _listening()
    try:
        for port in (runtime.port, runtime.internal_port):
            for foreign in (f"rebind.attacker.example:{port}", "rebind.attacker.example", f"localhost.example:{port}",
                            f"127.0.0.1:{port + 1}", f"10.0.0.8:{port}", "127.0.0.1", f"[::2]:{port}", ":",
                            f"127.0.0.1:{port}@evil.example"):
                assert _status(port, foreign) == 400, foreign
            for own in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST.:{port}", f"[::1]:{port}"):
                assert _status(port, own) == 204, own
    finally:
        runtime.stop()


def test_the_refusal_is_the_uniform_error_and_never_reaches_the_app():
    runtime = _listening()
    try:
        with httpx.Client() as client:
            reply = client.post(f"http://127.0.0.1:{runtime.internal_port}/api/v1/workflows",
                                headers={"Host": f"rebind.attacker.example:{runtime.internal_port}",
                                         "X-Tenant-Id": "victim"}, json={})
    finally:
        runtime.stop()
    assert reply.status_code == 400
    assert reply.json()["error"] == "ValidationError" and "does not name this server" in reply.json()["details"]


def test_a_wildcard_public_listener_takes_any_address_but_no_name_and_the_internal_one_only_loopback():
    runtime = _listening(host="0.0.0.0")
    try:
        assert _status(runtime.port, f"192.168.1.20:{runtime.port}") == 204  # the machine's LAN address
        assert _status(runtime.port, f"0.0.0.0:{runtime.port}") == 204
        assert _status(runtime.port, f"rebind.attacker.example:{runtime.port}") == 400
        assert _status(runtime.internal_port, f"192.168.1.20:{runtime.internal_port}") == 400
        assert _status(runtime.internal_port, f"localhost:{runtime.internal_port}") == 204
    finally:
        runtime.stop()


def test_a_star_origin_is_refused_wherever_origins_are_read(monkeypatch, capsys):
    from workflow_runs.settings import Settings
    from workflow_runs_dev.cli import main
    from workflow_runs_http.cors import CorsMiddleware

    base = {"RUNS_TABLE": "runs", "EVENTS_TABLE": "events"}
    for value in ("*", " * ", "https://a.example.com,*"):
        with pytest.raises(ValueError, match=r"CORS_ALLOW_ORIGINS: '\*' is refused"):
            Settings.from_env({**base, "CORS_ALLOW_ORIGINS": value})
    with pytest.raises(ValueError, match=r"'\*' is refused"):
        CorsMiddleware(_app, allow_origins=("*",))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dev", "--cors-origin", "*"])
    assert "'*' is refused" in capsys.readouterr().err
    # From the environment, `workflow-runs dev` stops at once with one clear line.
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "*")
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # keep pytest's Ctrl-C
    assert main(["dev", "--no-examples", "--port", str(free_port()), "--internal-port", str(free_port())]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("workflow-runs dev could not start: CORS_ALLOW_ORIGINS: '*' is refused")
    assert "\n" not in err
