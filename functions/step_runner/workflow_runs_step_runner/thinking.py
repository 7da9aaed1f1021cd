"""A step's reasoning text, coalesced into few writes and still streamed live.

A model streams its reasoning in many small deltas (Bedrock: a few tokens each, tens a
second). Every `thinking` item written costs a write unit on the runs table, a stream record,
a projector invocation (at low traffic), an event written and read: so `ThinkingWriter`
writes at most once per `window` seconds (docs/decisions.md, 2026-12-07):

- text that arrives when nothing was written for `window` seconds is written at once (the
  first reasoning reaches readers without delay);
- text that arrives sooner waits for the window to close (a timer), then goes out in one
  item with everything that arrived meanwhile — or at once when `max_chars` have gathered;
- `flush` (the step's end, before its end is written) writes whatever is left.

So no text waits longer than `window` seconds (plus its write) before it is in the table,
and a step writes at most one item per window, however fast its model streams.

Order and completeness: items are numbered in the order their text arrived and written one
at a time. A text's number is fixed when it is cut: a write that fails keeps its item as it
is (same number, same text) and writes it again, before anything newer, at the next write —
the timer's next turn, the next text, or `flush`, which raises if it still fails (the step
then fails, as an unbuffered write's error did). An item written twice is the same item:
its second write reaches the table's stream as a MODIFY, which the projector turns into no
event (it projects a thinking item's INSERT only), so no reader sees its text twice.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

THINKING_WINDOW_SECONDS = 1.0
# An item stays within one write unit on the runs table and on the event log (1 KB with its
# keys and attributes).
THINKING_MAX_CHARS = 700


class ThinkingWriter:
    def __init__(
        self,
        write: Callable[[int, str], None],
        *,
        window: float = THINKING_WINDOW_SECONDS,
        max_chars: int = THINKING_MAX_CHARS,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[float, Callable[[], None]], Any] = threading.Timer,
    ):
        self._write = write
        self._window = window
        self._max_chars = max_chars
        self._clock = clock
        self._make_timer = timer
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._pending_chars = 0
        self._cut: list[tuple[int, str]] = []  # numbered, not yet written (a write failed)
        self._seq = 0
        self._last_write = float("-inf")
        self._timer: Any = None

    def emit(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._pending.append(text)
            self._pending_chars += len(text)
            due = self._last_write + self._window
            if self._pending_chars >= self._max_chars or self._clock() >= due:
                self._write_all()
            elif self._timer is None:
                # The timer's thread writes in the step's context (its context variables).
                self._timer = self._make_timer(max(0.0, due - self._clock()),
                                               partial(contextvars.copy_context().run, self._on_timer))
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Write everything left; raises if a write fails."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._write_all()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            try:
                self._write_all()
            except Exception:  # noqa: BLE001, S110 - the items stay cut and are written by the next write or flush
                pass

    def _write_all(self) -> None:
        """Under the lock: cut what is pending into the next item, then write every cut item in order."""
        if self._pending:
            self._seq += 1
            self._cut.append((self._seq, "".join(self._pending)))
            self._pending.clear()
            self._pending_chars = 0
        while self._cut:
            seq, text = self._cut[0]
            self._write(seq, text)
            self._cut.pop(0)
            self._last_write = self._clock()
