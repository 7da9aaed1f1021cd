"""Threat: listeners that trust more than they should be reachable by. `workflow-runs dev
--host 0.0.0.0` moved the internal listener (which believes `X-Tenant-Id`) onto the network
with the public one; and the stream function's uvicorn listened on every interface, where
only the Lambda Web Adapter (on loopback) may reach it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

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
