"""A command in a real pseudo-terminal (the `pty` module), read as it writes: what a user at a
terminal sees, when they see it, and its exit code."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from typing import Self

from tests.e2e.devserver import ROOT, console_script


class Terminal:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None = None):
        master, slave = pty.openpty()
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                        start_new_session=True, close_fds=True)
        os.close(slave)
        self._master = master
        self.output = ""
        self.chunks: list[tuple[float, str]] = []  # (monotonic time, text) as it arrived
        self.started = time.monotonic()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self._master)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self._master, 65536)
        except OSError:  # EIO: the command closed the terminal
            return False
        if not data:
            return False
        text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        self.output += text
        self.chunks.append((time.monotonic(), text))
        return True

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output, re.MULTILINE)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} did not appear in {timeout} s; the terminal shows:\n{self.output}")
            if not self._read(0.1) and self.process.poll() is not None:
                found = re.search(pattern, self.output, re.MULTILINE)
                if found:
                    return found
                raise AssertionError(f"the command ended without {pattern!r}; the terminal shows:\n{self.output}")

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.1):
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s; the terminal shows:\n{self.output}")
        return self.process.wait(timeout=max(1, deadline - time.monotonic()))

    def seen_at(self, text: str) -> float:
        """Seconds after the start when `text` had fully appeared."""
        so_far = ""
        for at, chunk in self.chunks:
            so_far += chunk
            if text in so_far:
                return at - self.started
        raise AssertionError(f"{text!r} never appeared")


def cli(url: str, token: str | None, *args: str) -> Terminal:
    """`workflow-runs ARGS` in a terminal, with WORKFLOW_RUNS_URL (and WORKFLOW_RUNS_TOKEN) set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFLOW_RUNS_")}
    env.update({"WORKFLOW_RUNS_URL": url, "TERM": "xterm", "PYTHONUNBUFFERED": "1"})
    if token:
        env["WORKFLOW_RUNS_TOKEN"] = token
    return Terminal([console_script(), *args], env=env, cwd=str(ROOT))
