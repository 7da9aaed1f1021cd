"""Approval steps: a person decides mid-run (docs/steps.md, "approval").

The step runner parks an approval step with a Step Functions task token (sealed here, kept in
the store, never returned or logged); `decide` records a decision exactly once and then
hands the token back to Step Functions (SendTaskSuccess / SendTaskFailure), so nothing runs
or polls while a run waits.

Order matters: the decision is written to the store, conditionally, BEFORE Step Functions is
told. Two concurrent decisions cannot both win, and a decision whose callback is lost (a
crash, a callback that loses to the timeout) is still applied: the state machine's timeout
path reads the stored decision first (docs/decisions.md).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import Field, field_validator

from .backoff import Backoff, transient
from .ending import LostRaces, retry_lost_races
from .errors import Conflict, Forbidden, NotFound, ValidationFailed
from .models import ApiModel, RunError, Status, WorkflowRun, approval_approvers, utc_now
from .orchestrator import Orchestrator
from .secrets import APPROVAL_TOKEN
from .states import APPROVAL_STEP
from .store import RunStore
from .store.approvals import APPROVED, REJECTED, TIMED_OUT

logger = logging.getLogger("workflow_runs.approvals")

MAX_COMMENT_CHARS = 2000
MAX_DECISION_OUTPUTS_BYTES = 16 * 1024
RESERVED_OUTPUTS = ("approved", "comment", "decidedAt", "decidedBy", "prompt")
REJECTED_MESSAGE = "rejected"
TIMED_OUT_MESSAGE = "approval timed out"
# The callback is tried again while Step Functions is busy (a throttle past botocore's
# retries): 5 s in all, longer than a burst of throttles, well inside API Gateway's 29 s.
CALLBACK_RETRIES = Backoff(attempts=6, base_seconds=0.2, cap_seconds=2.0, jitter=False)
# The error a rejection ends the Approval task with (the ASL's Catch takes it to RecordFailure,
# which finds the run failed already and changes nothing).
REJECTED_ERROR = "ApprovalRejected"


class DecisionRequest(ApiModel):
    """The optional body of `…/approve` and `…/reject`."""

    comment: str | None = Field(default=None, max_length=MAX_COMMENT_CHARS)
    outputs: dict[str, Any] | None = Field(default=None, description="approve only; at most 16 KB as JSON")

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        reserved = sorted(set(value) & set(RESERVED_OUTPUTS))
        if reserved:
            raise ValueError(f"{', '.join(reserved)} are set by the server")
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size > MAX_DECISION_OUTPUTS_BYTES:
            raise ValueError(f"at most {MAX_DECISION_OUTPUTS_BYTES} bytes as JSON, got {size}")
        return value


# ---------------------------------------------------------------------------- the token


# The purpose a task token is sealed for: its KMS encryption context carries it, and in AWS
# a key of its own seals it (TOKENS_KMS_KEY_ID), so the internet-facing API function may
# decrypt approval tokens and never a run's envs (infra/constructs/api.py).
TOKEN_PURPOSE = APPROVAL_TOKEN


def token_context(run_id: str, step_id: str) -> str:
    """What a sealed token is bound to: another run's or another step's blob does not open."""
    return f"{run_id}/approval/{step_id}"


def seal_token(sealer: Any, run_id: str, step_id: str, token: str) -> str:
    return str(sealer.seal({"taskToken": token}, token_context(run_id, step_id), purpose=TOKEN_PURPOSE))


def open_token(sealer: Any, blob: str, run_id: str, step_id: str) -> str:
    return str(sealer.unseal(blob, token_context(run_id, step_id), purpose=TOKEN_PURPOSE)["taskToken"])


# ---------------------------------------------------------------------------- deciding


def decide(
    store: RunStore,
    orchestrator: Orchestrator,
    sealer: Callable[[], Any],
    tenant: str,
    run_id: str,
    step_id: str,
    *,
    approve: bool,
    request: DecisionRequest,
    decided_by: str,
) -> WorkflowRun:
    """Approve or reject a waiting approval step, once, as `decided_by` (the caller's subject,
    or 'internal'), which the stored outputs carry as `decidedBy`. NotFound: no such run for
    this tenant, or no such step in its workflow. Forbidden: the step lists `approvers` and
    `decided_by` is not one of them (asked before anything about the step's state is said).
    Conflict: the step is not waiting for a decision (decided, not reached, not an approval
    step, or the run ended)."""
    if not approve and request.outputs is not None:
        raise ValidationFailed(["outputs: only an approval carries outputs"])
    comment = request.comment
    decision_id = str(uuid.uuid4())  # kept through this request's own retries

    def attempt() -> tuple[Any, str, str]:
        record = store.get_run_record(run_id, tenant)
        index = next((i for i, s in enumerate(record.steps) if s.id == step_id), None)
        if index is None:
            raise NotFound(f"step {step_id} not found in the run's workflow")
        if record.steps[index].type != APPROVAL_STEP:
            raise Conflict(f"step {step_id} is not an approval step")
        approvers = approval_approvers(record.steps[index])
        if approvers is not None and decided_by not in approvers:
            raise Forbidden(f"step {step_id} may be decided only by its approvers")
        if record.status.terminal:
            raise Conflict(f"the run has ended ({record.status.value})")
        waiting = next((a for a in reversed(record.run.activity_runs)
                        if a.step_id == step_id and a.status is Status.WAITING), None)
        approval = store.get_approval(run_id, index)
        if waiting is None and approval is not None and approval.get("decision") in (REJECTED, TIMED_OUT):
            # Decided and its step closed, but the run's end never landed (the table stayed
            # busy after the first write): finish it, then answer as for any decided step.
            closed = next((a for a in reversed(record.run.activity_runs) if a.step_id == step_id), None)
            message = str(((closed.outputs if closed else None) or {}).get("error") or REJECTED_MESSAGE)
            store.fail_after_decision(record, RunError(message=message, step_id=step_id))
        if waiting is None and approval is not None and approval.get("decision") == APPROVED and \
                _nothing_after(record.run, approval.get("activityRunId")):
            # Approved, yet the run has started nothing since: the execution may never have
            # been told (the API died between the write and the callback). Tell it again.
            return None, approval["token"], ""
        if waiting is None or approval is None or approval.get("activityRunId") != waiting.id:
            raise Conflict(f"step {step_id} is not waiting for a decision")
        if approval.get("decision"):
            raise Conflict(f"step {step_id} was decided already")
        decided_at = utc_now()
        if approve:
            # The caller's outputs first: the server's fields (and the prompt) cannot be forged.
            outputs = {**(request.outputs or {}), "prompt": _prompt(waiting), "approved": True, "comment": comment,
                       "decidedAt": decided_at, "decidedBy": decided_by}
            updated = store.decide_approval(record, index, waiting, APPROVED, outputs, decision_id=decision_id)
        else:
            message = comment or REJECTED_MESSAGE
            outputs = {"prompt": _prompt(waiting), "approved": False, "comment": comment, "decidedAt": decided_at,
                       "decidedBy": decided_by, "error": message}
            updated = store.decide_approval(record, index, waiting, REJECTED, outputs,
                                            error=RunError(message=message, step_id=step_id), decision_id=decision_id)
        return updated, approval["token"], comment or REJECTED_MESSAGE

    try:
        updated, sealed, message = retry_lost_races(attempt)
    except LostRaces:
        raise Conflict(f"step {step_id} kept changing; read the run and try again") from None
    if updated is None:
        _callback(orchestrator, sealer, run_id, step_id, sealed, True, message, again=True)
        raise Conflict(f"step {step_id} was decided already")
    logger.info("approval decided", extra={"run_id": run_id, "step_id": step_id, "approved": approve})
    _callback(orchestrator, sealer, run_id, step_id, sealed, approve, message)
    return updated.run


def _prompt(waiting: Any) -> Any:
    """The prompt the person was shown (the waiting step's outputs), kept beside the decision."""
    return (waiting.outputs or {}).get("prompt")


def _nothing_after(run: WorkflowRun, activity_run_id: Any) -> bool:
    """Whether the run's latest attempt is the approval's own (closed) one and the run goes on."""
    return (not run.status.terminal and bool(run.activity_runs)
            and run.activity_runs[-1].id == activity_run_id)


def _callback(orchestrator: Orchestrator, sealer: Callable[[], Any], run_id: str, step_id: str, sealed: str,
              approve: bool, message: str, *, again: bool = False) -> None:
    """Tell the waiting execution, again while Step Functions is busy (CALLBACK_RETRIES). A
    failure here loses nothing: the decision is stored, a repeated approve tells it again, and
    the Approval state's timeout path applies it (the token itself is never logged). `again`:
    a repeated approve re-sends it; Step Functions refuses a token already answered, as expected."""
    try:
        token = open_token(sealer(), sealed, run_id, step_id)
        for delay in [*CALLBACK_RETRIES.delays(), None]:
            try:
                if approve:
                    orchestrator.send_task_success(token, json.dumps({"runId": run_id}))
                else:
                    orchestrator.send_task_failure(token, REJECTED_ERROR, message[:256])
                return
            except Exception as exc:
                if delay is None or not transient(exc):
                    raise
                time.sleep(delay)
    except Exception as exc:  # noqa: BLE001 - the decision stands; the execution learns it at its timeout
        if again:  # the usual case: the first callback arrived and the task has moved on
            logger.info("the approval was sent again and not taken (answered already)",
                        extra={"run_id": run_id, "step_id": step_id, "error_type": type(exc).__name__})
            return
        logger.warning("the waiting execution could not be told of the decision; its timeout path applies it",
                       extra={"run_id": run_id, "step_id": step_id, "error_type": type(exc).__name__})
