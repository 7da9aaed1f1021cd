"""Event cursors: the sort key of a run's event log and the SSE `id`.

A cursor is derived from the DynamoDB stream record that caused the event, so projecting a
redelivered record rewrites the same events under the same keys instead of adding copies:

  <SequenceNumber, zero-padded to 40 digits>-<index of the event within its record, 2 digits>

Stream sequence numbers grow within a shard, and a run's items share one partition key, so
they reach one shard (lineage) in write order; padding makes string order (the log's sort
key) equal numeric order. The events of a run's terminal record — its last `workflow-run`
(index 0) and the closing `result` / `error` (index 1) — carry a `~` prefix, which sorts
after every digit: anything written with the run's end in one transaction (a cancel closes
the open activity runs with it) or after it (a late `llm` step's thinking) must not land
behind the event that ends every stream, and the projector writes a batch's terminal
records last for the same reason. Resuming after a closing cursor therefore has nothing
left to read, which the SSE app can tell from the cursor alone.

`START` ("0") sorts before every cursor: "after START" is "from the first event".
"""

from __future__ import annotations

import re

SEQUENCE_WIDTH = 40  # DynamoDB Streams: SequenceNumber is 21 to 40 digits
INDEX_WIDTH = 2
CLOSING_PREFIX = "~"
START = "0"
MAX_CURSOR_CHARS = 64

_CURSOR = re.compile(rf"~?\d{{{SEQUENCE_WIDTH}}}-\d{{{INDEX_WIDTH}}}")


class InvalidSequenceNumber(ValueError):
    pass


CLOSING_INDEX = 1  # a terminal record's events: [workflow-run, result | error]


def event_cursor(sequence_number: str, index: int, *, terminal: bool = False) -> str:
    if not (isinstance(sequence_number, str) and sequence_number.isdigit() and sequence_number.isascii()):
        raise InvalidSequenceNumber(f"not a stream sequence number: {sequence_number!r}")
    digits = sequence_number.lstrip("0") or "0"
    if len(digits) > SEQUENCE_WIDTH:
        raise InvalidSequenceNumber(f"sequence number over {SEQUENCE_WIDTH} digits")
    if not 0 <= index < 10**INDEX_WIDTH:
        raise ValueError("event index out of range")
    cursor = f"{digits.rjust(SEQUENCE_WIDTH, '0')}-{index:0{INDEX_WIDTH}d}"
    return CLOSING_PREFIX + cursor if terminal else cursor


def is_cursor(value: str) -> bool:
    """A cursor a client may resume after: START or one the projector made."""
    return value == START or _CURSOR.fullmatch(value) is not None


def is_closing(cursor: str) -> bool:
    return cursor.startswith(CLOSING_PREFIX) and cursor.endswith(f"-{CLOSING_INDEX:0{INDEX_WIDTH}d}")


def is_closing_or_later(cursor: str) -> bool:
    """Nothing of the run comes after this cursor: it is a closing event's, or sorts after one
    within the terminal record (`GET …/events` answers 204 to it)."""
    if not (cursor.startswith(CLOSING_PREFIX) and is_cursor(cursor)):
        return False
    return int(cursor.rsplit("-", 1)[1]) >= CLOSING_INDEX
