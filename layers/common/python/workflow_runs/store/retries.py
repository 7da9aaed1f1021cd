"""Retry writes: a failed run's retry is created once, and it inherits the completed steps.

Two writes, in this order:
1. One transaction: the new run as `create_run` writes it (head with `retryOf`, the failed
   run's sealed envs blob with the run id it is bound to, counters, idempotency claim) and
   the failed run's `retriedBy`, conditional on that run being `failed` and not retried yet.
   Two retries at once: exactly one transaction passes; the other's condition fails.
2. One transaction: the completed steps' activity runs copied into the new run (`reused`),
   conditional on the new run still being `scheduled` and on none of them existing yet.
   A write of its own after the run's, so the run's first event (`workflow-run`,
   `scheduled`) reaches the stream before the copied steps' events. The orchestration
   starts only after it, so the step runner never reads the run without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import keys
from ..errors import Conflict
from ..marshal import key, n, s
from ..models import ActivityRun, Status
from .dynamo import ConditionFailed
from .records import NewRun, RunRecord
from .runs import RunWrites

# A transaction holds at most 100 entries: the check on the run and up to 99 copied steps
# (a workflow has at most 100 steps, and a retry re-runs at least one).
MAX_TRANSACT_ITEMS = 100


class RetryWrites(RunWrites):
    def create_retry(self, new: NewRun, source: RunRecord) -> tuple[RunRecord, bool]:
        """Write the retry of `source` (a failed run) and mark `source` retried by it, at once.
        Returns (record, created). A repeat with the same idempotency key and request finds
        the first retry (created=False). Conflict when `source` is not failed, or another
        retry of it won."""
        writes = self.creation_writes(new)
        claim_at = len(writes) - 1 if new.idempotency_key else None
        writes.append({
            "Update": {
                "TableName": self.runs_table,
                "Key": key(keys.run_pk(source.id), keys.RUN_SK),
                "UpdateExpression": "SET retriedBy = :new",
                "ConditionExpression": "#st = :failed AND tenant = :tenant AND attribute_not_exists(retriedBy)",
                "ExpressionAttributeNames": {"#st": "status"},
                "ExpressionAttributeValues": {":new": s(new.run_id), ":failed": s(Status.FAILED.value),
                                              ":tenant": s(new.tenant)},
            }
        })
        try:
            self.db.transact(writes)
        except ConditionFailed as exc:
            if claim_at is not None and claim_at in exc.failed:
                return self._replay_idempotent(new), False
            if len(writes) - 1 in exc.failed:
                raise Conflict(self.not_retryable(source.id)) from None
            raise
        return self._created_record(new), True

    def not_retryable(self, run_id: str) -> str:
        """Why a run cannot be retried, as the caller may read it (its status, or its retry)."""
        head = self.get_run_record(run_id).run
        if head.retried_by:
            return f"workflow run {run_id} was already retried by run {head.retried_by}"
        return f"workflow run {run_id} is {head.status.value}; only a failed run can be retried"

    def copy_reused(self, run_id: str, reused: Sequence[tuple[int, ActivityRun]]) -> bool:
        """Copy the completed steps into the (scheduled) retry `run_id`, all at once. False
        when they are there already (a repeated request resumed the start) or the run left
        `scheduled` (it was cancelled): either way there is nothing to copy any more."""
        if not reused:
            return True
        if len(reused) >= MAX_TRANSACT_ITEMS:
            raise ValueError(f"at most {MAX_TRANSACT_ITEMS - 1} steps can be copied in one transaction")
        check: dict[str, Any] = {
            "ConditionCheck": {
                "TableName": self.runs_table,
                "Key": key(keys.run_pk(run_id), keys.RUN_SK),
                "ConditionExpression": "#st = :scheduled AND stepSeq = :zero",
                "ExpressionAttributeNames": {"#st": "status"},
                "ExpressionAttributeValues": {":scheduled": s(Status.SCHEDULED.value), ":zero": n(0)},
            }
        }
        try:
            self.db.transact([check, *(self._activity_put(run_id, (index, a, None)) for index, a in reused)])
            return True
        except ConditionFailed:
            return False
