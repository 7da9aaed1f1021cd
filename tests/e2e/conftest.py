"""`workflow-runs dev` for the end-to-end suites that need nothing but a running one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.devserver import DevServer
from tests.e2e.devserver import dev_server as start_dev_server


@pytest.fixture(scope="module")
def dev_server() -> Iterator[DevServer]:
    """`workflow-runs dev` as a user starts it (its own signing key and dev token, the example
    workflows loaded); one per test module."""
    with start_dev_server(examples=True) as server:
        yield server
