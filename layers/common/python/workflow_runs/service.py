"""What the API and the stream apps do with runs and workflows: one function per use case.

Handlers parse and authorise; these functions hold the rules; the store does the I/O.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from . import retries, run_class, telemetry
from .backoff import transient
from .ending import end_from_outside
from .errors import Conflict, PayloadTooLarge, TransitionRejected, Unavailable, ValidationFailed
from .log_reader import Pacing
from .models import (
    ApiModel,
    InputsInvalid,
    RunError,
    RunInput,
    Status,
    Workflow,
    WorkflowDefinition,
    WorkflowPut,
    WorkflowRun,
    resolve_inputs,
)
from .orchestrator import Orchestrator
from .pages import open_token, seal_token
from .serverkey import server_key
from .settings import Settings
from .store import NewRun, Page, RunRecord, RunStore
from .waiting import parked_steps_of, quiet_steps_of, wait_for_end

if TYPE_CHECKING:
    from .approvals import DecisionRequest

logger = logging.getLogger("workflow_runs.service")

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_ENVS = 50
PAGE_TOKEN_LABEL = b"workflow-runs/list-page-token/v1"
# Offset pages read every item before them; past this depth only `nextToken` pages.
MAX_OFFSET_ITEMS = 10_000
# A run's head item holds its inputs (its list indexes copy them), its envs item the sealed
# envs; each must stay within DynamoDB's 400 KB. The headroom is for keys, index attributes,
# a later error and cancel reason. (With the default 256 KiB body limit both fit; an
# operator who raises MAX_BODY_BYTES meets this check instead of a DynamoDB error.)
DYNAMODB_ITEM_BYTES = 400 * 1024
RUN_ITEM_HEADROOM_BYTES = 16 * 1024
MAX_RUN_CONTENT_BYTES = DYNAMODB_ITEM_BYTES - RUN_ITEM_HEADROOM_BYTES


def uuid_value(value: str) -> str:
    """The canonical (lower-case, hyphenated) form of a UUID, or ValueError."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise ValueError("must be a UUID") from None
    if str(parsed) != value.lower():
        raise ValueError("must be a hyphenated UUID")
    return str(parsed)


def canonical_uuid(value: str, field_name: str) -> str:
    try:
        return uuid_value(value)
    except ValueError as exc:
        raise ValidationFailed([f"{field_name}: {exc}"]) from None


def _refuse_oversized_run(inputs: list[RunInput], sealed_envs: str | None) -> None:
    """413 before anything is written when a run item would not fit in DynamoDB. Measured
    as the store writes it: compact JSON, UTF-8. (Steps live in the workflow's version item.)"""
    for what, size in (("inputs", _json_bytes([i.dump() for i in inputs])), ("envs", len(sealed_envs or ""))):
        if size > MAX_RUN_CONTENT_BYTES:
            raise PayloadTooLarge(
                f"the run's {what} would take {size} bytes; a run holds at most {MAX_RUN_CONTENT_BYTES} "
                f"(a DynamoDB item is at most {DYNAMODB_ITEM_BYTES} bytes)")


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


class ExecuteRequest(ApiModel):
    workflow_id: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    envs: dict[str, str] = Field(default_factory=dict, max_length=MAX_ENVS)

    @field_validator("workflow_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return uuid_value(value)

    @field_validator("envs")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, secret in value.items():
            if not name or len(name) > 128:
                raise ValueError("names are 1–128 characters")
            if len(secret) > 4096:
                raise ValueError(f"value of '{name}' is over 4096 characters")
        return value


class CancelRequest(ApiModel):
    run_ids: list[str] | None = Field(default=None, min_length=1, max_length=100)
    workflow_id: str | None = None
    reason: str | None = Field(default=None, max_length=500)

    @field_validator("run_ids")
    @classmethod
    def _run_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        ids = [uuid_value(v) for v in value]
        return list(dict.fromkeys(ids))  # a repeated id is cancelled and reported once

    @field_validator("workflow_id")
    @classmethod
    def _workflow_id(cls, value: str | None) -> str | None:
        return None if value is None else uuid_value(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> CancelRequest:
        if (self.run_ids is None) == (self.workflow_id is None):
            raise ValueError("give exactly one of runIds or workflowId")
        return self


BUSY = "the store is busy; nothing was changed for this run; try again"
# How long a start is tried again while Step Functions throttles (a storm lasts seconds).
START_PATIENCE_SECONDS = 10.0
START_GRACE_SECONDS = 3.0
START_RETRY_FIRST_SECONDS = 0.1
def _settled_or(store: RunStore, record: RunRecord) -> RunRecord:
    """The run as stored now, or `record` when the store is too busy to say."""
    try:
        return store.get_run_record(record.id)
    except Unavailable:
        return record


class ListQuery(ApiModel):
    """A list request: filters, and where to start (an offset page, or a cursor token)."""

    workflow_id: str | None = None
    status: Status | None = None
    search: str | None = Field(default=None, min_length=1, max_length=200)
    page: int = Field(default=1, ge=1)
    limit: int = Field(default=10, ge=1, le=100)
    next_token: str | None = Field(default=None, min_length=1, max_length=512)
    page_given: bool = False

    @field_validator("workflow_id")
    @classmethod
    def _workflow_id(cls, value: str | None) -> str | None:
        return None if value is None else uuid_value(value)

    @model_validator(mode="after")
    def _one_way_to_page(self) -> ListQuery:
        if self.next_token and self.page_given:
            raise ValueError("give page or nextToken, not both")
        if not self.next_token and self.page * self.limit > MAX_OFFSET_ITEMS:
            raise ValueError(
                f"page × limit may not pass {MAX_OFFSET_ITEMS:,}; follow pagination.nextToken to read further"
            )
        return self

    def filters(self) -> dict[str, Any]:
        """What a token is bound to (the page size may change between pages)."""
        return {"workflowId": self.workflow_id, "status": self.status.value if self.status else None,
                "search": self.search}


CancelOutcome = Literal["cancelled", "already_completed", "not_eligible", "not_found", "error"]


class CancelResult(ApiModel):
    run_id: str
    status: CancelOutcome
    message: str | None = None


@dataclass
class RunService:
    store: RunStore
    orchestrator: Orchestrator
    settings: Settings
    # Seals `envs` for storage; built lazily so reads never touch KMS.
    sealer_factory: Callable[[], Any] | None = None
    # Keys the fingerprint of an idempotent request; built lazily, as the sealer.
    fingerprinter_factory: Callable[[], Callable[[str, Any], str]] | None = None

    # ------------------------------------------------------------ workflows

    def put_workflow(self, tenant: str, workflow_id: str, definition: WorkflowDefinition) -> Workflow:
        return self.store.put_workflow(tenant, workflow_id, definition)

    def replace_workflow(self, tenant: str, workflow_id: str, body: WorkflowPut,
                         if_match: int | None = None) -> Workflow:
        """A PUT: a definition, or the object GET returned. Its `id` must be the path's; its
        `version` and `if_match` (If-Match), when given, are preconditions on the stored
        version, checked by the store in the write itself."""
        if body.id is not None and body.id.lower() != workflow_id:
            raise ValidationFailed([f"id: must be the workflow id of the path ({workflow_id})"])
        expected = {v for v in (body.version, if_match) if v is not None}
        if len(expected) > 1:
            raise Conflict(f"version {body.version} and If-Match \"{if_match}\" disagree; at most one can be current")
        return self.store.put_workflow(tenant, workflow_id, body.definition(),
                                       expected_version=expected.pop() if expected else None)

    def get_workflow(self, tenant: str, workflow_id: str) -> Workflow:
        return self.store.get_workflow(tenant, workflow_id)

    def list_workflows(self, tenant: str, page: int, limit: int) -> tuple[list[Workflow], int]:
        return self.store.list_workflows(tenant, page, limit)

    # ------------------------------------------------------------ runs

    def start_run(self, tenant: str, request: ExecuteRequest, idempotency_key: str | None = None, *,
                  subject: str = "") -> WorkflowRun:
        """Create the run (scheduled) and start its orchestration; returns at once. `subject`
        (the caller) is part of an idempotent request's fingerprint."""
        return self._start_run(tenant, request, idempotency_key, subject)[0]

    def _start_run(self, tenant: str, request: ExecuteRequest, idempotency_key: str | None,
                   subject: str, deadline: float | None = None) -> tuple[WorkflowRun, Workflow]:
        workflow = self.store.get_workflow(tenant, request.workflow_id)
        try:
            inputs = resolve_inputs(workflow, request.inputs)
        except InputsInvalid as exc:
            raise ValidationFailed(exc.problems) from None
        run_id = str(uuid.uuid4())
        sealed = self._sealer().seal(request.envs, run_id) if request.envs else None
        _refuse_oversized_run(inputs, sealed)
        record, created = self.store.create_run(
            NewRun(
                run_id=run_id,
                tenant=tenant,
                workflow=workflow,
                inputs=inputs,
                sealed_envs=sealed,
                idempotency_key=idempotency_key,
                request_hash=self._fingerprinter()(subject, request.dump()) if idempotency_key else None,
                orchestration=run_class.choose(workflow.steps, self.settings),
            )
        )
        telemetry.correlate(run_id=record.id)
        if created:
            telemetry.run_started(record.run.orchestration)
        if created or record.status is Status.SCHEDULED:
            # A repeat of a request whose first attempt died before starting resumes the start;
            # the execution name is the run id, so starting twice starts once.
            record = self._start_execution(record, deadline)
        return record.run, workflow

    def _start_execution(self, record: RunRecord, deadline: float | None = None) -> RunRecord:
        """Start the run's execution, again while Step Functions is busy (a throttle that
        outlasted botocore's retries, a storm lasts seconds) for START_PATIENCE_SECONDS, or
        until START_GRACE_SECONDS past a blocking execute's `deadline` (its answer stays
        within API Gateway's 29 s). A start that still fails ends the run `failed` with that
        reason; when even that write meets a busy table the run stays `scheduled` for the
        reconciler. Never raises: the run exists, and its caller answers with it."""
        give_up = time.monotonic() + START_PATIENCE_SECONDS
        give_up = min(give_up, deadline + START_GRACE_SECONDS) if deadline is not None else give_up
        delay = START_RETRY_FIRST_SECONDS
        while True:
            try:
                self.orchestrator.start(record.id, record.run.orchestration)
                return record
            except Exception as exc:
                if transient(exc) and time.monotonic() + delay < give_up:
                    logger.warning("starting the orchestration failed; trying again", exc_info=True,
                                   extra={"run_id": record.id, "in_seconds": delay})
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                logger.exception("could not start the orchestration", extra={"run_id": record.id})
                break
        try:
            return self.store.transition_run(
                record, Status.FAILED, error=RunError(message="the run could not be started; try again")
            )
        except TransitionRejected:
            return _settled_or(self.store, record)
        except Unavailable:
            logger.warning("the run could not be started nor failed; the reconciler settles it",
                           extra={"run_id": record.id})
            return record

    def execute(
        self, tenant: str, request: ExecuteRequest, idempotency_key: str | None = None, *, subject: str = "",
        deadline: float | None = None,
    ) -> tuple[WorkflowRun, bool]:
        """Start a run and wait for its end until `deadline` (a `time.monotonic()` time; the
        HTTP layer counts it from the request's arrival, see workflow_runs_http.deadlines),
        by default `EXECUTE_WAIT_SECONDS` from now. Returns (run, ended)."""
        if deadline is None:
            deadline = time.monotonic() + self.settings.execute_wait_seconds
        run, workflow = self._start_run(tenant, request, idempotency_key, subject, deadline)
        if run.status.terminal:
            return run, True
        if time.monotonic() >= deadline:
            return run, False
        # From here on the run exists: whatever the store meets, the answer is the run (202
        # with its Location when its end is not known), never "nothing was changed".
        try:
            # The run's end reaches its event log as the closing event: wake on it.
            outcome = wait_for_end(self.store, run.id, deadline, Pacing.from_settings(self.settings),
                                   quiet_steps=quiet_steps_of(workflow.steps),
                                   parked_steps=parked_steps_of(workflow.steps))
            if outcome.run is not None:
                return WorkflowRun.model_validate(outcome.run), True
            final = self.store.get_run(tenant, run.id)
        except Unavailable:
            logger.warning("the store is busy after the run was created; answering with the run",
                           extra={"run_id": run.id})
            return run, False
        return final, outcome.ended or final.status.terminal

    def retry(self, tenant: str, run_id: str, idempotency_key: str | None = None, *, subject: str = "") -> WorkflowRun:
        """Start a new run of a failed run's workflow version, inputs and envs, carrying the
        steps it completed (workflow_runs.retries). Exactly one retry per failed run: the
        store marks the failed run `retriedBy` in the same transaction that creates the
        retry. An idempotent repeat returns the first retry (and resumes its start)."""
        source = self.store.get_run_record(run_id, tenant)  # another tenant's run: NotFound
        if not idempotency_key and (source.status is not Status.FAILED or source.run.retried_by):
            # (With a key, the write decides: a repeat must find its first retry even now.)
            raise Conflict(self.store.not_retryable(run_id))
        retry_id = str(uuid.uuid4())
        plan = retries.plan_retry(source, retry_id)
        workflow = self.store.workflow_version(tenant, source.run.workflow_id, source.workflow_version)
        fingerprint = (self._fingerprinter()(subject, retries.retry_fingerprint_body(run_id))
                       if idempotency_key else None)
        record, created = self.store.create_retry(
            NewRun(
                run_id=retry_id,
                tenant=tenant,
                workflow=workflow,
                inputs=source.run.inputs,
                # The blob stays bound to the run it was sealed for; the API never opens it.
                sealed_envs=source.sealed_envs,
                sealed_for=(source.sealed_for or source.id) if source.sealed_envs else None,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
                orchestration=run_class.choose(retries.steps_to_run(source, plan), self.settings),
                retry_of=run_id,
            ),
            source,
        )
        if created or record.status is Status.SCHEDULED:
            if not created:  # a repeat resuming a start that died: the plan is the first retry's
                plan = retries.plan_retry(source, record.id)
            try:
                self.store.copy_reused(record.id, plan.reused)
            except Unavailable:
                # The run exists and must start: the step runner makes the same copy (the
                # same conditional write, the same ids) before its first step.
                logger.warning("copying the reused steps met a busy table; the step runner copies them",
                               extra={"run_id": record.id})
            record = self._start_execution(record)
        try:
            return self.store.get_run(tenant, record.id)
        except Unavailable:  # the retry exists: answered with it as written, never "nothing changed"
            return record.run

    def cancel(self, tenant: str, request: CancelRequest) -> list[CancelResult]:
        if request.workflow_id:
            self.store.get_workflow(tenant, request.workflow_id)  # another tenant's workflow is 404
            run_ids = self.store.non_terminal_run_ids(tenant, request.workflow_id)
        else:
            run_ids = request.run_ids or []
        results, busy = [], 0
        for run_id in run_ids:
            try:
                results.append(self._cancel_one(tenant, run_id, request.reason))
            except Unavailable:
                busy += 1
                results.append(CancelResult(run_id=run_id, status="error", message=BUSY))
        if results and busy == len(results):
            raise Unavailable("the store is busy; nothing was cancelled; try again")
        return results

    def _cancel_one(self, tenant: str, run_id: str, reason: str | None) -> CancelResult:
        ending = end_from_outside(self.store, run_id, Status.CANCELLED, tenant=tenant, cancel_reason=reason)
        if ending.record is None:
            return CancelResult(run_id=run_id, status="not_found", message="run not found")
        if not ending.changed:
            if ending.before is Status.CANCELLED:
                return CancelResult(run_id=run_id, status="not_eligible", message="run was already cancelled")
            return CancelResult(run_id=run_id, status="already_completed",
                                message=f"run already {ending.record.status.value}")
        return self._stop(run_id, reason, started=ending.before is not Status.SCHEDULED,
                          orchestration=ending.record.run.orchestration)

    def _stop(self, run_id: str, reason: str | None, started: bool, orchestration: str) -> CancelResult:
        # The run is cancelled in the store first: that is the truth every step write checks,
        # so even if stopping the execution fails (or, for Express, cannot be done), no later
        # step can change the run.
        try:
            existed = self.orchestrator.stop(run_id, reason, orchestration=orchestration)
        except Exception:
            logger.exception("stopping the orchestration failed", extra={"run_id": run_id})
            return CancelResult(
                run_id=run_id,
                status="error",
                message="the run is cancelled, but stopping its orchestration failed; "
                "the execution ends by itself at its next step and changes nothing",
            )
        if not existed and started:
            return CancelResult(run_id=run_id, status="cancelled", message="its orchestration had already ended")
        return CancelResult(run_id=run_id, status="cancelled")

    def list_runs(self, tenant: str, query: ListQuery) -> tuple[Page, int, str | None]:
        """A page of runs, its number, and the token of the next one (None on the last page)."""
        filters = query.filters()
        key = server_key(self.settings, PAGE_TOKEN_LABEL)
        after, number = open_token(key, tenant, filters, query.next_token) if query.next_token else (None, query.page)
        page = self.store.list_runs(
            tenant,
            workflow_id=query.workflow_id,
            status=query.status,
            search=query.search,
            limit=query.limit,
            after=after,
            offset=0 if after else (query.page - 1) * query.limit,
        )
        token = seal_token(key, tenant, filters, page.next_after, number) if page.next_after else None
        return page, number, token

    def dashboard(self, tenant: str, workflow_id: str) -> dict[str, int]:
        return self.store.counts(tenant, workflow_id)

    def get_run(self, tenant: str, run_id: str) -> WorkflowRun:
        return self.store.get_run(tenant, run_id)

    def decide_approval(self, tenant: str, run_id: str, step_id: str, *, approve: bool,
                        request: DecisionRequest, decided_by: str) -> WorkflowRun:
        """Approve or reject a waiting approval step, exactly once, as `decided_by`
        (workflow_runs.approvals)."""
        from .approvals import decide

        return decide(self.store, self.orchestrator, self._sealer, tenant, run_id, step_id,
                      approve=approve, request=request, decided_by=decided_by)

    def _sealer(self) -> Any:
        if self.sealer_factory is None:
            from .secrets import get_sealer

            return get_sealer(self.settings)
        return self.sealer_factory()

    def _fingerprinter(self) -> Callable[[str, Any], str]:
        if self.fingerprinter_factory is None:
            from .fingerprint import get_fingerprinter

            return get_fingerprinter(self.settings)
        return self.fingerprinter_factory()
