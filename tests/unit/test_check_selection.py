"""`make check` leaves out every test that needs a server or runs long, and nothing else:
the markers come from tests/conftest.py (by folder and by fixture), the selection from the
Makefile's CHECK_MARKERS. This test collects the whole tree once, so it is itself `slow`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def collected(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", *args],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {line for line in done.stdout.splitlines() if "::" in line}


def everything(session: pytest.Session) -> set[str]:
    """Every test of the tree: this session's, when it collected the whole tree unfiltered
    (`make test`), else a collection of its own."""
    mine = {item.nodeid for item in session.items}
    folders = {nodeid.split("/")[1] for nodeid in mine if nodeid.startswith("tests/")}
    whole = folders >= {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    unfiltered = not session.config.option.markexpr and not session.config.option.keyword
    tree = [Path(arg).resolve() for arg in session.config.args] in ([], [ROOT / "tests"], [ROOT])
    return mine if whole and unfiltered and tree else collected()


def test_make_check_selects_no_test_that_needs_a_server_or_is_slow(request: pytest.FixtureRequest) -> None:
    markers = re.search(r"^CHECK_MARKERS := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert markers, "the Makefile names its selection"

    every = everything(request.session)
    check = collected("-m", markers.group(1))

    left_out = every - check
    for folder in ("e2e", "integration", "reliability", "contention", "bench", "infra"):
        assert not any(t.startswith(f"tests/{folder}/") for t in check), folder
        assert any(t.startswith(f"tests/{folder}/") for t in left_out), folder
    # The store suite runs on both backends: moto's half is in, DynamoDB Local's is out.
    assert any(t.startswith("tests/store/") and "[moto" in t for t in check)
    assert not any("dynamodb_local" in t for t in check)
    # A unit test that starts DynamoDB Local through a fixture is out, without a marker of its own.
    assert any(t.startswith("tests/unit/test_local_orchestrator.py") for t in left_out)
    # The unit and API suites are otherwise in.
    assert any(t.startswith("tests/api/") for t in check) and any(t.startswith("tests/unit/") for t in check)
