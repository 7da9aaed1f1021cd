"""The run store: the only code in the project that talks to DynamoDB.

Split by concern: `dynamo` (the client, and telling a lost condition from a busy table),
`workflows`, `queries` (run reads, counts, list pages), `runs` (run writes), `approvals`
(an approval's token and decision), `retries` (a failed run's retry), `retention` (an
expired run's counters and items), `events` (the event log) and `leases` (open SSE streams
per tenant), `stream_range` (a failed stream batch read back for the repair); DynamoDB JSON is `workflow_runs.marshal`, which the projector shares. `RunStore` is all of them over one client.
"""

from __future__ import annotations

from .approvals import ApprovalWrites
from .dynamo import ConditionFailed, Dynamo, dynamodb_client
from .events import EventLog
from .leases import StreamLease, StreamLeases
from .records import ActivityWrite, NewRun, Page, RunRecord, StaleRun
from .rehearsal import warm_up
from .retention import RunRetention
from .retries import RetryWrites


class RunStore(ApprovalWrites, RetryWrites, RunRetention, EventLog, StreamLeases):
    """Workflows, runs, approvals, retries, the event log and the stream leases of one
    deployment (two tables, one client)."""


__all__ = [
    "ActivityWrite",
    "ConditionFailed",
    "Dynamo",
    "NewRun",
    "Page",
    "RunRecord",
    "RunStore",
    "StaleRun",
    "StreamLease",
    "StreamLeases",
    "dynamodb_client",
    "warm_up",
]
