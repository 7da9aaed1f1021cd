"""A run's closing event, told from its status: the repair of an event log behind its run.

The projector writes a run's closing event (`result` / `error`) from the stream record of
its end. When that record never gets projected (the projector's attempts ran out in a
storm), the log stays behind the run's status: a reader would wait for an end it has no way
to see. Two roads close it from the run item instead, with the same content the projector
writes:
- the repair (`repair_log`, the reconciler's): writes the missing events into the log under
  `REPAIR_CURSORS`, which sort after every cursor the projector makes (a closing cursor is
  `~<40 digits>-01`; these are all nines), so a closing event the projector writes later
  comes before them and a reader stops there: the log never ends twice for a reader;
- a reader whose log stays idle while the status says the run ended (`closing_event`):
  it ends with this event, under the same cursor, without waiting for the repair.
"""

from __future__ import annotations

from typing import Any, Protocol

from .events import end_error_event, is_closing, result_event, run_event
from .states import Status

# ~<SequenceNumber padded to 40 digits>-<index>, as workflow_runs_stream.cursors makes them.
_REPAIR_SEQUENCE = "9" * 40
REPAIR_CURSORS = (f"~{_REPAIR_SEQUENCE}-00", f"~{_REPAIR_SEQUENCE}-01")


class RunReader(Protocol):
    def get_run_record(self, run_id: str, tenant: str | None = None) -> Any: ...

    def get_run(self, tenant: str, run_id: str) -> Any: ...


class ClosingStore(RunReader, Protocol):
    def events_after(self, run_id: str, cursor: str | None, limit: int = 100, *,
                     consistent: bool = True) -> list[tuple[str, str, Any]]: ...

    def put_event(self, run_id: str, cursor: str, name: str, data: dict[str, Any]) -> None: ...


def closing_events(run: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(cursor, name, data) of an ended run's last `workflow-run` event and its closing event,
    as the projector writes them; [] for a run that has not ended."""
    status = Status(run.status)
    if not status.terminal:
        return []
    if status is Status.COMPLETED:
        closing: tuple[str, Any] = result_event(run.dump())
    else:
        error = run.error
        closing = end_error_event(run.id, status.value, error.message if error else None,
                                  error.step_id if error else None)
    return [(REPAIR_CURSORS[0], *run_event(run.id, status.value)), (REPAIR_CURSORS[1], *closing)]


def ended_run(store: RunReader, run_id: str) -> Any | None:
    """The run as GET returns it when it has ended, else None (it goes on); NotFound for
    an unknown run."""
    record = store.get_run_record(run_id)
    if not record.status.terminal:
        return None
    return store.get_run(record.tenant, run_id)


def log_closed(store: ClosingStore, run_id: str) -> bool:
    """Whether the run's event log holds a closing event (it sorts last: read from the end)."""
    cursor = None
    while True:
        page = store.events_after(run_id, cursor, 100)
        if any(is_closing(name) for _, name, _ in page):
            return True
        if len(page) < 100:
            return False
        cursor = page[-1][0]


def repair_log(store: ClosingStore, run_id: str) -> bool:
    """Write an ended run's closing events into its log when the log has none. True when it
    wrote them; False when the run has not ended or its log is closed already."""
    from .errors import NotFound

    try:
        run = ended_run(store, run_id)
    except NotFound:
        return False
    if run is None or log_closed(store, run_id):
        return False
    for cursor, name, data in closing_events(run):
        store.put_event(run_id, cursor, name, data)
    return True
