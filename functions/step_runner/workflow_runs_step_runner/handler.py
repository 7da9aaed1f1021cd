"""Lambda entry point of the step runner function (the state machine's RunStep and
RecordFailure tasks; the reconciler's is `workflow_runs_step_runner.reconciler.handler`).

Thin on purpose: collaborators come from cached factories built on the first invocation,
so importing this module costs next to nothing and tests import it freely.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


class LazySealer:
    """Opens envs with the configured sealer, built only when a run has envs (most steps of
    most runs never need KMS or the cryptography import)."""

    def __init__(self, settings: Any):
        self._settings = settings

    def unseal(self, blob: str, run_id: str) -> dict[str, str]:
        from workflow_runs.secrets import get_sealer

        return get_sealer(self._settings).unseal(blob, run_id)


@lru_cache(maxsize=1)
def collaborators() -> dict[str, Any]:
    from workflow_runs.settings import get_settings
    from workflow_runs.store import RunStore

    settings = get_settings()
    return {"settings": settings, "store": RunStore(settings), "sealer": LazySealer(settings)}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    from workflow_runs_step_runner.runner import run_step

    return run_step(event, **collaborators())
