"""Domain models: workflows, runs, activity runs, statuses and their allowed transitions."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .states import (  # noqa: F401 - re-exported: models is where most code looks for them
    ALLOWED_TRANSITIONS,
    NON_TERMINAL,
    STANDARD,
    TERMINAL,
    RunClass,
    Status,
    can_transition,
    sources_of,
)

MAX_ATTEMPTS_CEILING = 10  # the state machine's Retry upper bound; see docs/decisions.md
INPUT_TYPES = ("string", "number", "integer", "boolean", "object", "array")
_STEP_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


# The one timestamp format of the contract: ISO 8601 UTC with milliseconds and Z.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # to parse; %f reads the milliseconds


def timestamp(moment: datetime) -> str:
    """`moment` as the contract writes a time: 2026-01-01T00:00:00.000Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime:
    """A time the contract wrote (`timestamp`), as an aware UTC datetime."""
    return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def utc_now() -> str:
    """Now, as the contract writes a time."""
    return timestamp(datetime.now(UTC))


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


class WorkflowInput(ApiModel):
    name: str
    type: Literal["string", "number", "integer", "boolean", "object", "array"]
    required: bool = False
    default: Any = None
    description: str | None = Field(default=None, max_length=500)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _INPUT_NAME.match(value):
            raise ValueError("input names start with a letter or _ and hold letters, digits and _ (≤ 64)")
        return value

    @model_validator(mode="after")
    def _default_matches_type(self) -> WorkflowInput:
        if self.default is not None and not value_matches_type(self.default, self.type):
            raise ValueError(f"default of input '{self.name}' is not of type {self.type}")
        return self


class Retry(ApiModel):
    max_attempts: int = Field(default=1, ge=1, le=MAX_ATTEMPTS_CEILING)


class Step(ApiModel):
    id: str
    name: str | None = Field(default=None, max_length=200)
    # One of STEP_KINDS (below): checked by `_type`, listed in the schema as an enum.
    type: str = Field(json_schema_extra=lambda schema: schema.update(enum=list(STEP_KINDS)))
    config: dict[str, Any] = Field(default_factory=dict)
    retry: Retry = Field(default_factory=Retry)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _STEP_ID.match(value):
            raise ValueError("step ids start with a letter and hold letters, digits, _ and - (≤ 64)")
        return value

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value not in STEP_KINDS:
            raise ValueError("Input should be " + ", ".join(f"'{name}'" for name in STEP_KINDS))
        return value

    @model_validator(mode="after")
    def _config_shape(self) -> Step:
        problems = STEP_KINDS[self.type].rules(self.config)
        if problems:
            raise ValueError(f"step '{self.id}' ({self.type}): " + "; ".join(problems))
        return self


def _needs_string(config: dict[str, Any], key: str) -> list[str]:
    return [] if isinstance(config.get(key), str) and config[key] else [f"config.{key} must be a non-empty string"]


def _wait_rules(config: dict[str, Any]) -> list[str]:
    seconds = config.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= MAX_WAIT_SECONDS:
        return [f"config.seconds must be an integer from 0 to {MAX_WAIT_SECONDS}"]
    return []


def _http_rules(config: dict[str, Any]) -> list[str]:
    problems = _needs_string(config, "url")
    method = config.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        problems.append(f"config.method must be one of {', '.join(HTTP_METHODS)}")
    if "headers" in config and not isinstance(config["headers"], dict):
        problems.append("config.headers must be an object")
    follow = config.get("followRedirects", "same-origin")
    if not (isinstance(follow, bool) or follow == "same-origin"):
        problems.append("config.followRedirects must be true, false or 'same-origin'")
    return problems


def _transform_rules(config: dict[str, Any]) -> list[str]:
    return [] if "output" in config else ["config.output is required (a template, or an object of templates)"]


def _fail_rules(config: dict[str, Any]) -> list[str]:
    return [] if isinstance(config.get("message", ""), str) else ["config.message must be a string"]


def _approval_rules(config: dict[str, Any]) -> list[str]:
    problems = _needs_string(config, "prompt")
    timeout = config.get("timeoutSeconds", DEFAULT_APPROVAL_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_WAIT_SECONDS:
        problems.append(f"config.timeoutSeconds must be an integer from 1 to {MAX_WAIT_SECONDS}")
    approvers = config.get("approvers")
    if approvers is not None and not (
            isinstance(approvers, list) and 1 <= len(approvers) <= MAX_APPROVERS
            and all(isinstance(a, str) and 0 < len(a) <= MAX_SUBJECT_CHARS and a == a.strip() for a in approvers)):
        problems.append(f"config.approvers must be a list of 1 to {MAX_APPROVERS} subjects (non-empty strings of at "
                        f"most {MAX_SUBJECT_CHARS} characters, no surrounding spaces)")
    if not isinstance(config.get("reuseOnRetry", False), bool):
        problems.append("config.reuseOnRetry must be true or false")
    unknown = sorted(set(config) - APPROVAL_CONFIG_KEYS)
    if unknown:
        problems.append(f"unknown config keys: {', '.join(unknown)} (an approval takes "
                        f"{', '.join(sorted(APPROVAL_CONFIG_KEYS))})")
    return problems


def approval_approvers(step: Step) -> frozenset[str] | None:
    """The subjects who may decide an approval step; None: anyone of the tenant."""
    approvers = step.config.get("approvers")
    return None if approvers is None else frozenset(approvers)


def approval_reused_on_retry(step: Step) -> bool:
    """Whether a retry of a failed run keeps this approval's decision (`reuseOnRetry: true`)
    rather than asking again (the default)."""
    return step.config.get("reuseOnRetry") is True


def _llm_rules(config: dict[str, Any]) -> list[str]:
    problems = _needs_string(config, "prompt")
    timeout = config.get("timeoutSeconds", DEFAULT_LLM_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_LLM_TIMEOUT_SECONDS:
        problems.append(f"config.timeoutSeconds must be a number above 0 and at most {MAX_LLM_TIMEOUT_SECONDS}")
    return problems


def llm_timeout_seconds(step: Step) -> float:
    """The model call's whole budget (request, reasoning and answer streamed), in seconds:
    validated when the workflow is PUT, enforced by the step."""
    return float(step.config.get("timeoutSeconds", DEFAULT_LLM_TIMEOUT_SECONDS))


def approval_timeout_seconds(step: Step) -> int:
    """How long an approval step waits for a decision (validated when the workflow is PUT)."""
    return int(step.config.get("timeoutSeconds", DEFAULT_APPROVAL_TIMEOUT_SECONDS))


APPROVAL_CONFIG_KEYS = frozenset({"prompt", "timeoutSeconds", "approvers", "reuseOnRetry"})
MAX_APPROVERS = 100
MAX_SUBJECT_CHARS = 256
MAX_WAIT_SECONDS = 365 * 24 * 3600  # a Standard execution lives at most a year
DEFAULT_APPROVAL_TIMEOUT_SECONDS = 24 * 3600
DEFAULT_LLM_TIMEOUT_SECONDS = 60
# The step runner's Lambda timeout is 300 s; the rest is room for the step's own writes.
MAX_LLM_TIMEOUT_SECONDS = 270
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


def _any_config(config: dict[str, Any]) -> list[str]:
    return []


@dataclass(frozen=True)
class StepKind:
    """A step type: where the step runner finds it ("module:Class", imported there on first
    use) and the rules its `config` must meet when a workflow is PUT."""

    runner: str
    rules: Callable[[dict[str, Any]], list[str]] = _any_config


_STEPS = "workflow_runs_step_runner.steps"
# Every step type, once. A new type is one module in functions/step_runner/…/steps/ and one
# line here; the PUT validation, the schema's enum and the step runner's registry read this.
STEP_KINDS: dict[str, StepKind] = {
    "transform": StepKind(f"{_STEPS}.transform:TransformStep", _transform_rules),
    "http": StepKind(f"{_STEPS}.http:HttpStep", _http_rules),
    "llm": StepKind(f"{_STEPS}.llm:LlmStep", _llm_rules),
    "wait": StepKind(f"{_STEPS}.wait:WaitStep", _wait_rules),
    "fail": StepKind(f"{_STEPS}.fail:FailStep", _fail_rules),
    "approval": StepKind(f"{_STEPS}.approval:ApprovalStep", _approval_rules),
}
STEP_TYPES = tuple(STEP_KINDS)


class WorkflowDefinition(ApiModel):
    """What a client PUTs: everything but the id and version, which the server owns."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    inputs: list[WorkflowInput] = Field(default_factory=list, max_length=100)
    steps: list[Step] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _unique(self) -> WorkflowDefinition:
        step_ids = [s.id for s in self.steps]
        if len(set(step_ids)) != len(step_ids):
            raise ValueError(f"step ids must be unique: {sorted(_dupes(step_ids))}")
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique: {sorted(_dupes(names))}")
        return self


def _dupes(values: list[str]) -> set[str]:
    seen: set[str] = set()
    dupes: set[str] = set()
    for value in values:
        (dupes if value in seen else seen).add(value)
    return dupes


class Workflow(WorkflowDefinition):
    id: str
    version: int = Field(ge=1)
    created_at: str
    updated_at: str


class WorkflowPut(WorkflowDefinition):
    """A PUT body: a definition, or the whole object GET returned. `id` must name the path's
    workflow, `version` (when given) is a precondition, `createdAt`/`updatedAt` are ignored:
    the server owns them."""

    id: str | None = None
    version: int | None = Field(default=None, ge=1)
    created_at: str | None = Field(default=None, max_length=64)
    updated_at: str | None = Field(default=None, max_length=64)

    def definition(self) -> WorkflowDefinition:
        return WorkflowDefinition.model_validate(self.model_dump(exclude={"id", "version", "created_at", "updated_at"}))


class RunInput(ApiModel):
    name: str
    value: Any


class RunError(ApiModel):
    message: str
    step_id: str | None = None


class ActivityRun(ApiModel):
    id: str
    step_id: str
    step_name: str | None
    status: Status
    outputs: dict[str, Any] | None = None
    attempt: int = Field(ge=1)
    created_at: str
    updated_at: str
    # True for a step's activity run copied from the failed run this run retries: its outputs
    # are that run's, and the step did not run again.
    reused: bool = False


class WorkflowRunSummary(ApiModel):
    id: str
    workflow_id: str
    workflow_name: str | None
    status: Status
    inputs: list[RunInput]
    created_at: str
    updated_at: str


class WorkflowRun(WorkflowRunSummary):
    activity_runs: list[ActivityRun] = Field(default_factory=list)
    error: RunError | None = None
    cancel_reason: str | None = None
    # The run class, chosen when the run starts (workflow_runs.run_class); never changes.
    orchestration: RunClass = STANDARD
    # A retry of a failed run names the run it retries; the failed run names its retry.
    retry_of: str | None = None
    retried_by: str | None = None


def value_matches_type(value: Any, type_name: str) -> bool:
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_name == "object":
        return isinstance(value, dict)
    if type_name == "array":
        return isinstance(value, list)
    return False


def resolve_inputs(workflow: WorkflowDefinition, given: dict[str, Any]) -> list[RunInput]:
    """Check `given` against the declared inputs, apply defaults, keep declaration order.

    Raises ValueError with one line per problem, so a caller can fix them all at once.
    """
    declared = {i.name: i for i in workflow.inputs}
    problems = [f"inputs.{name}: unknown input" for name in given if name not in declared]
    resolved: list[RunInput] = []
    for spec in workflow.inputs:
        if spec.name in given:
            value = given[spec.name]
            if not value_matches_type(value, spec.type):
                problems.append(f"inputs.{spec.name}: expected {spec.type}")
                continue
            resolved.append(RunInput(name=spec.name, value=value))
        elif spec.default is not None:
            resolved.append(RunInput(name=spec.name, value=spec.default))
        elif spec.required:
            problems.append(f"inputs.{spec.name}: required")
    if problems:
        raise InputsInvalid(problems)
    return resolved


class InputsInvalid(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems
