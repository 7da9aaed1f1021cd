"""A newcomer's first hour, from the README only: `make help` lists every target, `make dev`
takes other ports and says in one line when one is taken, `bin/workflow-runs` runs the client
without activating anything, and every `curl` line `make dev` prints works as printed (its
first execute runs a workflow that completes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess

import pytest

from tests.e2e.devserver import ROOT, DevServer

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("curl") is None,
                                reason="needs make and curl, as the README does")


def phony_targets() -> list[str]:
    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith(".PHONY:"))
    return line.split(":", 1)[1].split()


def test_make_help_lists_every_target():
    shown = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    listed = {m.group(1) for m in re.finditer(r"^make (\S+)", shown.stdout, re.MULTILINE)}
    assert "install" in phony_targets()
    assert set(phony_targets()) <= listed, set(phony_targets()) - listed


def test_make_dev_on_a_taken_port_says_so_in_one_line_naming_the_settings():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
        done = subprocess.run(["make", "-s", "dev", f"PORT={port}", "INTERNAL_PORT=0", "ARGS=--dynamodb moto"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, env=env, check=False)
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in said
    [line] = [line for line in said.splitlines() if "could not start" in line]
    assert f"127.0.0.1:{port} (the public listener, PORT) already in use" in line
    assert "make dev PORT=" in line and "INTERNAL_PORT=" in line and "--port" in line


def test_the_bin_wrapper_runs_the_client_from_the_checkout():
    done = subprocess.run([str(ROOT / "bin" / "workflow-runs"), "runs", "list", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("usage: workflow-runs runs list")


def test_every_curl_line_the_dev_server_prints_works_as_printed(dev_server: DevServer):
    lines = [line.strip() for line in dev_server.banner.splitlines() if line.strip().startswith("curl ")]
    assert len(lines) >= 4
    executes = [line for line in lines if "/execute" in line]
    assert executes and "/execute/stream" not in executes[0]
    for line in lines:
        done = subprocess.run(["bash", "-c", line.replace("curl ", "curl -w '\\n%{http_code}' ", 1)],
                              env={**os.environ, "TOKEN": dev_server.token or ""},
                              capture_output=True, text=True, timeout=60, check=False)
        body, _, status = done.stdout.rpartition("\n")
        assert status == "200", (line, done.stdout[-2000:])
        if line == executes[0]:  # the first run a newcomer starts completes
            assert json.loads(body)["workflowRun"]["status"] == "completed", body
        if "/execute/stream" in line:
            assert "event: result" in body, body[-2000:]
