"""Step types by name: `workflow_runs.models.STEP_KINDS`, where a new type is one line
(its module beside this file, its config rules).

Types are imported on first use: a cold step runner that only renders templates never pays
for httpx or boto3.
"""

from __future__ import annotations

import importlib
from functools import cache

from workflow_runs.models import STEP_KINDS

from workflow_runs_step_runner.steps.base import StepError, StepType


def names() -> tuple[str, ...]:
    return tuple(STEP_KINDS)


@cache
def get(type_name: str) -> StepType:
    kind = STEP_KINDS.get(type_name)
    if kind is None:
        raise StepError(f"unknown step type {type_name!r}", retryable=False)
    module_name, _, class_name = kind.runner.partition(":")
    return getattr(importlib.import_module(module_name), class_name)()
