"""Step types by name. A new type is one module beside this file and one line below.

Types are imported on first use: a cold step runner that only renders templates never pays
for httpx or boto3.
"""

from __future__ import annotations

import importlib
from functools import cache

from workflow_runs_step_runner.steps.base import StepError, StepType

TYPES: dict[str, str] = {
    "transform": "workflow_runs_step_runner.steps.transform:TransformStep",
    "http": "workflow_runs_step_runner.steps.http:HttpStep",
    "llm": "workflow_runs_step_runner.steps.llm:LlmStep",
    "wait": "workflow_runs_step_runner.steps.wait:WaitStep",
    "fail": "workflow_runs_step_runner.steps.fail:FailStep",
    "approval": "workflow_runs_step_runner.steps.approval:ApprovalStep",
}


@cache
def get(type_name: str) -> StepType:
    target = TYPES.get(type_name)
    if target is None:
        raise StepError(f"unknown step type {type_name!r}", retryable=False)
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)()
