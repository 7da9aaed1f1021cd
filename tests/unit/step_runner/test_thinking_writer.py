"""Reasoning text coalesced into few writes: in order, complete, within its window, and
nothing lost when a write fails (workflow_runs_step_runner.thinking)."""

from __future__ import annotations

from typing import Any

import pytest
from workflow_runs_step_runner.thinking import ThinkingWriter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Timers:
    """threading.Timer's stand-in: the test decides when a timer fires."""

    def __init__(self) -> None:
        self.started: list[FakeTimer] = []

    def __call__(self, delay: float, action: Any) -> FakeTimer:
        timer = FakeTimer(delay, action)
        self.started.append(timer)
        return timer

    def fire(self) -> None:
        live = [t for t in self.started if t.running]
        assert live, "no timer is running"
        for timer in live:
            timer.running = False
            timer.action()


class FakeTimer:
    def __init__(self, delay: float, action: Any):
        self.delay, self.action, self.running, self.daemon = delay, action, False, False

    def start(self) -> None:
        self.running = True

    def cancel(self) -> None:
        self.running = False


class Table:
    """What put_thinking leaves: items by number; `fail` makes the next writes raise."""

    def __init__(self) -> None:
        self.items: dict[int, str] = {}
        self.writes: list[tuple[int, str]] = []
        self.fail = 0

    def write(self, seq: int, text: str) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("table busy")
        assert self.items.get(seq, text) == text, "an item's number was reused for other text"
        self.items[seq] = text
        self.writes.append((seq, text))

    def joined(self) -> str:
        return "".join(self.items[seq] for seq in sorted(self.items))


@pytest.fixture
def parts():
    clock, timers, table = Clock(), Timers(), Table()
    writer = ThinkingWriter(table.write, window=1.0, max_chars=50, clock=clock, timer=timers)
    return writer, clock, timers, table


def test_the_first_text_goes_out_at_once_and_what_follows_within_the_window_in_one_item(parts):
    writer, clock, timers, table = parts
    writer.emit("a")
    assert table.writes == [(1, "a")]  # nothing written for a window: no delay
    for text in "bcd":
        clock.now += 0.2
        writer.emit(text)
    assert table.writes == [(1, "a")]
    assert [t.delay for t in timers.started] == [pytest.approx(0.8)]  # due one window after the last write
    clock.now = 101.0
    timers.fire()
    assert table.writes == [(1, "a"), (2, "bcd")]
    writer.emit("e")
    writer.flush()
    assert table.joined() == "abcde" and len(table.writes) == 3


def test_a_fast_model_is_written_once_per_window_whatever_its_deltas(parts):
    writer, clock, timers, table = parts
    deltas = [f"{i} " for i in range(10)]  # 10 deltas a second for 3 seconds, 30 in all
    sent = []
    for second in range(3):
        for delta in deltas:
            writer.emit(delta)
            sent.append(delta)
            clock.now += 0.1
        if any(t.running for t in timers.started):
            timers.fire()
    writer.flush()
    assert table.joined() == "".join(sent)
    assert len(table.writes) <= 3 + 1  # one per window, and the flush
    assert [seq for seq, _ in table.writes] == list(range(1, len(table.writes) + 1))


def test_text_reaching_max_chars_is_written_without_waiting_for_the_window(parts):
    writer, _, _, table = parts
    writer.emit("x")
    writer.emit("y" * 30)
    writer.emit("z" * 30)  # 60 chars pending ≥ 50
    assert table.writes == [(1, "x"), (2, "y" * 30 + "z" * 30)]


def test_a_failed_write_keeps_its_item_and_nothing_is_lost_or_reordered(parts):
    writer, clock, timers, table = parts
    writer.emit("one ")
    clock.now += 0.5
    writer.emit("two ")
    table.fail = 1
    clock.now += 0.5
    timers.fire()  # the timer's write fails: "two " stays cut as item 2
    assert table.writes == [(1, "one ")]
    writer.emit("three ")  # the window has passed: item 2 goes again, then item 3
    assert table.writes == [(1, "one "), (2, "two "), (3, "three ")]
    writer.emit("four")
    table.fail = 1
    with pytest.raises(RuntimeError):
        writer.flush()  # the step's end must not be written over lost text
    writer.flush()
    assert table.joined() == "one two three four"


def test_a_write_that_succeeded_but_reported_failure_is_repeated_as_the_same_item(parts):
    _, clock, timers, table = parts
    written_then_failed = {"done": False}

    def flaky(seq: int, text: str) -> None:
        table.write(seq, text)
        if seq == 2 and not written_then_failed["done"]:
            written_then_failed["done"] = True
            raise RuntimeError("timeout after the write")

    writer = ThinkingWriter(flaky, window=1.0, max_chars=50, clock=clock, timer=timers)
    writer.emit("a")
    writer.emit("b")
    clock.now += 1.0
    timers.fire()
    writer.emit("c")
    writer.flush()
    assert table.writes == [(1, "a"), (2, "b"), (2, "b"), (3, "c")]  # the repeat is the same item
    assert table.joined() == "abc"


def test_the_timers_write_runs_in_the_context_of_the_step_that_emitted():
    import contextvars
    import threading

    function: contextvars.ContextVar[str] = contextvars.ContextVar("function", default="nobody")
    seen: list[str] = []
    written = threading.Event()

    def write(seq: int, text: str) -> None:
        seen.append(function.get())
        written.set()

    writer = ThinkingWriter(write, window=0.05)  # a real threading.Timer
    function.set("step-runner")
    writer.emit("first")  # written at once
    writer.emit("second")  # waits for the timer, whose thread writes it
    assert written.wait(5) and _wait_for(lambda: len(seen) == 2)
    assert seen == ["step-runner", "step-runner"]


def _wait_for(condition: Any, seconds: float = 5.0) -> bool:
    import time

    give_up = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.01)
    return True
