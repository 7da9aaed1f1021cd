"""`workflow-runs dev` started as a user starts it (a subprocess on free ports), for every
end-to-end test that talks to it over HTTP, a browser or a terminal; and workflows put over HTTP."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from workflow_runs_dev.dynamodb_local import free_port

ROOT = Path(__file__).resolve().parents[2]
RUNS = "/api/v1/workflow-runs"
THREE_STEP = "0f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d02"  # examples/three-step-transform.yaml
WORKFLOWS = "/api/v1/workflows"


def console_script() -> str:
    script = Path(sys.executable).with_name("workflow-runs")
    return str(script) if script.exists() else shutil.which("workflow-runs") or "workflow-runs"


class DevServer:
    def __init__(self, process: subprocess.Popen, banner: str, port: int, internal_port: int):
        self.process = process
        self.banner = banner
        self.port = port
        self.public = f"http://127.0.0.1:{port}"
        self.internal = f"http://127.0.0.1:{internal_port}"
        match = re.search(r"^export TOKEN=(\S+)$", banner, re.MULTILINE)
        self.token = match.group(1) if match else None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def put_workflow(self, definition: dict[str, Any]) -> str:
        workflow_id = str(uuid.uuid4())
        reply = httpx.put(f"{self.public}{WORKFLOWS}/{workflow_id}", json=definition, headers=self.headers,
                          timeout=10)
        assert reply.status_code == 200, reply.text
        return workflow_id

    def events(self, run_id: str) -> list[tuple[str, str]]:
        """The run's whole event log as the server keeps it: (id, name), pings left out."""
        frames: list[tuple[str, str]] = []
        with httpx.stream("GET", f"{self.public}{RUNS}/{run_id}/events", headers=self.headers, timeout=30) as r:
            event_id, name = None, "message"
            for line in r.iter_lines():
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line == "":
                    if event_id and name != "ping":
                        frames.append((event_id, name))
                    event_id, name = None, "message"
        return frames


@contextmanager
def dev_server(*extra: str, env: dict[str, str] | None = None, examples: bool = False,
               dynamodb_endpoint: str | None = None) -> Iterator[DevServer]:
    """`extra` arguments for `workflow-runs dev`; `env` over this process's environment
    (less the settings a test session sets for itself); `examples` loads examples/;
    `dynamodb_endpoint`: a running DynamoDB (the session's DynamoDB Local), in tables of the
    server's own, instead of a database the server starts."""
    port, internal_port = free_port(), free_port()
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("JWKS_URL", "RUNS_TABLE", "EVENTS_TABLE", "WORKFLOW_RUNS_URL", "WORKFLOW_RUNS_TOKEN")}
    if dynamodb_endpoint:
        suffix = uuid.uuid4().hex[:10]
        environment.update({"RUNS_TABLE": f"runs-{suffix}", "EVENTS_TABLE": f"events-{suffix}"})
        extra = ("--dynamodb-endpoint", dynamodb_endpoint, *extra)
    environment.update(env or {})
    process = subprocess.Popen(
        [console_script(), "dev", "--port", str(port), "--internal-port", str(internal_port),
         *(() if examples else ("--no-examples",)), *extra],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            break
    banner = "".join(lines)
    if process.poll() is not None or "Ctrl-C" not in banner:
        process.kill()
        raise RuntimeError(f"workflow-runs dev did not start:\n{banner}")
    # Keep reading its output so a chatty server never blocks on a full pipe.
    output = process.stdout
    drain = threading.Thread(target=lambda: [None for _ in output], name="dev-output", daemon=True)
    drain.start()
    try:
        yield DevServer(process, banner, port, internal_port)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        drain.join(timeout=10)
