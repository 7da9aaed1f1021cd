"""The security suite borrows the harnesses of the suites whose code each threat touches:
the API on moto (`api`), the step runner on moto (`bench`), step contexts (`make_ctx`), and
the issuer of the auth suites (`jwks_server`, `signing_key`, `tokens`, `clock`: every suite has them, tests/conftest.py)."""

from __future__ import annotations

from tests.api.conftest import api  # noqa: F401
from tests.unit.step_runner.conftest import make_ctx  # noqa: F401
from tests.unit.step_runner.test_runner import bench  # noqa: F401
