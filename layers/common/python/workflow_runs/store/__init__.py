"""The run store: the only code in the project that talks to DynamoDB.

Split by concern: `dynamo` (the client, and telling a lost condition from a busy table),
`workflows`, `queries` (run reads, counts, list pages), `runs` (run writes), `retries`
(a failed run's retry) and `events` (the event log); DynamoDB JSON is
`workflow_runs.marshal`, which the projector shares. `RunStore` is all of them over one client.
"""

from __future__ import annotations

from .dynamo import ConditionFailed, Dynamo, dynamodb_client
from .events import EventLog
from .records import ActivityWrite, NewRun, Page, RunRecord, StaleRun
from .retries import RetryWrites


class RunStore(RetryWrites, EventLog):
    """Workflows, runs and the event log of one deployment (two tables, one client)."""


__all__ = [
    "ActivityWrite",
    "ConditionFailed",
    "Dynamo",
    "NewRun",
    "Page",
    "RunRecord",
    "RunStore",
    "StaleRun",
    "dynamodb_client",
]
