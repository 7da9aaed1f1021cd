"""Every `curl` line of docs/api.md, run in the order written against `workflow-runs dev`
started as `make dev` starts it, and the HTTP status each answers compared with the one the
docs state beside it (`# → <status>`).

The fenced `sh` blocks are joined into one script (later lines use the `RUN` an earlier one
kept); the docs' `export TOKEN=…` becomes the token the server printed, and its addresses
127.0.0.1:8000 / :8001 the test server's ports. `curl` is wrapped so that each invocation
reports its status on stderr, after a marker naming the docs line it belongs to.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.devserver import DevServer, dev_server

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"
EXPECTED = re.compile(r"#\s*→\s*(\d{3})\b")
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
# curl reports each transfer's status on stderr (`%{stderr}` in --write-out, curl 7.63+)
PRELUDE = """curl() { command curl --write-out '%{stderr}@@STATUS %{http_code}\\n' "$@"; }
"""

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the docs' examples are curl lines")


@dataclass
class Command:
    line: int  # where it begins in docs/api.md (1-based)
    text: str  # as written (continuations joined)
    expected: int | None


def commands(markdown: str) -> list[Command]:
    """The shell commands of the `sh` blocks, in order; a `\\`-continued command is one."""
    found: list[Command] = []
    for block in BLOCK.finditer(markdown):
        first_line = markdown.count("\n", 0, block.start(1)) + 1
        pending: list[str] = []
        start = 0
        for offset, raw in enumerate(block.group(1).splitlines()):
            if not pending:
                start = first_line + offset
            pending.append(raw)
            if raw.rstrip().endswith("\\"):
                continue
            text = "\n".join(pending)
            pending = []
            expected = EXPECTED.search(text.splitlines()[-1])
            found.append(Command(start, text, int(expected.group(1)) if expected else None))
    return found


def is_curl(command: Command) -> bool:
    return re.search(r"(^|[\s($|])curl\s", command.text) is not None


@pytest.fixture(scope="module")
def server(dynamodb_local_endpoint: str) -> Iterator[DevServer]:
    # as docs/api.md says to start it for its CORS example (on the session's DynamoDB Local)
    with dev_server("--cors-origin", "http://localhost:5173", examples=True,
                    dynamodb_endpoint=dynamodb_local_endpoint) as running:
        yield running


def test_every_curl_line_of_the_api_docs_states_its_status():
    curls = [c for c in commands(API_DOC.read_text()) if is_curl(c)]
    assert len(curls) >= 40
    unstated = [f"docs/api.md:{c.line}: {c.text}" for c in curls if c.expected is None]
    assert not unstated, "\n".join(unstated)
    assert "curl " not in re.sub(BLOCK, "", API_DOC.read_text()).replace("`curl` line", ""), \
        "a curl example outside an sh block is not run by this test"


@pytest.mark.timeout(300)  # some 45 requests in sequence, the server's start and stop included
def test_every_curl_line_of_the_api_docs_answers_the_status_it_states(server: DevServer, tmp_path: Path):
    script = [PRELUDE]
    curls: dict[int, Command] = {}
    for command in commands(API_DOC.read_text()):
        if command.text.startswith("export TOKEN="):
            script.append(f"TOKEN={server.token}")
            continue
        text = command.text.replace("http://127.0.0.1:8000", server.public)
        text = text.replace("http://127.0.0.1:8001", server.internal)
        if is_curl(command):
            curls[command.line] = command
            script.append(f"echo '@@LINE {command.line}' >&2")
        script.append(text)
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180, check=False)

    seen: dict[int, list[int]] = {}
    line = None
    for entry in done.stderr.splitlines():
        if entry.startswith("@@LINE "):
            line = int(entry.split()[1])
            seen[line] = []
        elif entry.startswith("@@STATUS ") and line is not None:
            seen[line].append(int(entry.split()[1]))
    wrong = [f"docs/api.md:{n}: states {c.expected}, answered {seen.get(n)}\n    {c.text}"
             for n, c in curls.items() if seen.get(n) != [c.expected]]
    assert not wrong, "\n".join(wrong) + f"\n--- stdout (end):\n{done.stdout[-3000:]}"
