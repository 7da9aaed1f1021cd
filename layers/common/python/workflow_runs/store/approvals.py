"""Approval writes: parking an approval step with its sealed task token, and deciding it.

An approval has one item beside its activity run (`keys.approval_sk`): the sealed Step
Functions task token and, once decided, the decision. It is never projected (the projector
reads run heads, activity runs and thinking only) and never returned by a read of the run.

Exactly once: a decision is one conditional write on that item (`attribute_not_exists
(decision)`), in the same transaction as the activity's close (conditional on `waiting`).
Two decisions, a decision and a timeout, a decision and a cancel: one transaction wins, the
other finds its condition failed (`TransitionRejected`) and reads again.
"""

from __future__ import annotations

import uuid
from typing import Any

from .. import keys
from ..errors import TransitionRejected
from ..marshal import key, n, plain, s
from ..models import ActivityRun, RunError, Status, utc_now
from .dynamo import ConditionFailed
from .records import RunRecord
from .runs import RunWrites

APPROVED = "approved"
REJECTED = "rejected"
TIMED_OUT = "timed_out"


class ApprovalWrites(RunWrites):
    def park_approval(self, record: RunRecord, index: int, parked: ActivityRun, sealed_token: str,
                      timeout_seconds: int) -> RunRecord:
        """The approval step's activity run (opened `running`) and the run go `waiting`, and
        the sealed token is stored, in one transaction: whoever sees the step waiting can
        find its token. TransitionRejected when the run or the activity moved meanwhile."""
        return self.transition_run(
            record, Status.WAITING, activities=[(index, parked, [Status.RUNNING])],
            also=[self._approval_put(record.id, index, parked, sealed_token, timeout_seconds)])

    def replace_approval_token(self, record: RunRecord, index: int, waiting: ActivityRun, sealed_token: str,
                               timeout_seconds: int) -> bool:
        """A new task token for an approval that still waits undecided (the state machine
        entered its Approval state again). False when it was decided or closed meanwhile."""
        check = {
            "ConditionCheck": {
                "TableName": self.runs_table,
                "Key": key(keys.run_pk(record.id), keys.activity_sk(index, waiting.attempt)),
                "ConditionExpression": "#st = :waiting",
                "ExpressionAttributeNames": {"#st": "status"},
                "ExpressionAttributeValues": {":waiting": s(Status.WAITING.value)},
            }
        }
        try:
            self.db.transact([self._approval_put(record.id, index, waiting, sealed_token, timeout_seconds), check])
            return True
        except ConditionFailed:
            return False

    def _approval_put(self, run_id: str, index: int, activity: ActivityRun, sealed_token: str,
                      timeout_seconds: int) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.runs_table,
                "Item": {
                    **key(keys.run_pk(run_id), keys.approval_sk(index)),
                    "stepId": s(activity.step_id),
                    "activityRunId": s(activity.id),
                    "token": s(sealed_token),
                    "timeoutSeconds": n(timeout_seconds),
                    "parkedAt": s(utc_now()),
                },
                # A token never replaces a decided approval.
                "ConditionExpression": "attribute_not_exists(decision)",
            }
        }

    def get_approval(self, run_id: str, index: int) -> dict[str, Any] | None:
        """The approval item as plain values (its `token` sealed), or None (not parked yet)."""
        item = self.db.get(TableName=self.runs_table, Key=key(keys.run_pk(run_id), keys.approval_sk(index)),
                           ConsistentRead=True)
        return plain(item) if item else None

    def decide_approval(self, record: RunRecord, index: int, waiting: ActivityRun, decision: str,
                        outputs: dict[str, Any], error: RunError | None = None,
                        decision_id: str | None = None) -> RunRecord:
        """Record a decision once and close the step with it.

        Approved: one transaction — the decision, the activity `waiting → completed` with
        `outputs`, the run `waiting → running`. Rejected or timed out: the decision and the
        activity `waiting → failed` in one transaction (conditional on the run still
        waiting), then the run's move to failed in a write of its own, so the stream carries
        the step's end before the run's (as every other run ending does). If that second
        write loses (a cancel came between), the run stays as the other writer left it.
        Raises TransitionRejected when the decision was taken, or the step or the run moved.

        `decision_id` names this decision: a call repeated after its first write landed and
        its second did not (the table stayed busy: Unavailable) finds its own decision and
        finishes the run's end instead of losing to itself.
        """
        now = utc_now()
        decision_id = decision_id or str(uuid.uuid4())
        decided = {
            "Update": {
                "TableName": self.runs_table,
                "Key": key(keys.run_pk(record.id), keys.approval_sk(index)),
                "UpdateExpression": "SET decision = :d, decidedAt = :t, decisionId = :id",
                "ConditionExpression": "attribute_exists(PK) AND attribute_not_exists(decision) AND activityRunId = :a",
                "ExpressionAttributeValues": {":d": s(decision), ":t": s(now), ":a": s(waiting.id),
                                              ":id": s(decision_id)},
            }
        }
        if decision == APPROVED:
            closed = waiting.model_copy(update={"status": Status.COMPLETED, "outputs": outputs, "updated_at": now})
            updated = self.transition_run(record, Status.RUNNING, activities=[(index, closed, [Status.WAITING])],
                                          also=[decided])
            return updated.with_activities([closed if a.id == waiting.id else a for a in record.run.activity_runs])
        closed = waiting.model_copy(update={"status": Status.FAILED, "outputs": outputs, "updated_at": now})
        still_waiting = {
            "ConditionCheck": {
                "TableName": self.runs_table,
                "Key": key(keys.run_pk(record.id), keys.RUN_SK),
                "ConditionExpression": "#st = :waiting",
                "ExpressionAttributeNames": {"#st": "status"},
                "ExpressionAttributeValues": {":waiting": s(Status.WAITING.value)},
            }
        }
        try:
            self.db.transact([decided, self._activity_put(record.id, (index, closed, [Status.WAITING])),
                              still_waiting])
        except ConditionFailed as exc:
            if (self.get_approval(record.id, index) or {}).get("decisionId") != decision_id:
                raise TransitionRejected(f"the approval of run {record.id} was decided or closed meanwhile") from exc
        stepped = record.with_activities([closed if a.id == waiting.id else a for a in record.run.activity_runs])
        return self.fail_after_decision(stepped, error)

    def fail_after_decision(self, record: RunRecord, error: RunError | None) -> RunRecord:
        """The run's end after a rejected or timed-out approval (also the repair when an
        earlier call stopped between the two writes). A run that ended otherwise stays so."""
        try:
            return self.transition_run(record, Status.FAILED, error=error)
        except TransitionRejected:
            return self.get_run_record(record.id)
