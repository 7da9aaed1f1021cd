"""The one skeleton of the Lambda entry modules (workflow_runs.lambda_entry): the handler is
instrumented on first use, a rehearsal goes through the whole handler and fails the init
when a reply is not the expected one, and a restore makes the named factories again."""

from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Any

import pytest
from workflow_runs import telemetry
from workflow_runs.lambda_entry import LambdaEntry
from workflow_runs.store import rehearsal


def test_the_handler_is_instrumented_on_first_use_and_answers_what_the_plain_one_does(
        monkeypatch: pytest.MonkeyPatch):
    built: list[str] = []
    real_instrument = telemetry.instrument
    monkeypatch.setattr(telemetry, "instrument", lambda *a, **k: built.append(a[0]) or real_instrument(*a, **k))
    entry = LambdaEntry(telemetry.RECONCILER, lambda event, context: {"echo": event})

    assert built == []  # importing an entry module builds nothing
    assert entry.handler({"n": 1}) == {"echo": {"n": 1}}
    assert entry.handler({"n": 2}, None) == {"echo": {"n": 2}}
    assert built == [telemetry.RECONCILER]  # once


def test_an_unknown_service_is_refused():
    with pytest.raises(ValueError, match="unknown service"):
        LambdaEntry("billing", lambda event, context: None)


def test_a_rehearsal_runs_each_round_inside_its_context_and_a_wrong_reply_fails_the_init(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(rehearsal, "rounds", lambda: 3)
    seen: list[tuple[int, bool]] = []
    inside = {"now": False}

    @contextlib.contextmanager
    def answered() -> Any:
        inside["now"] = True
        yield
        inside["now"] = False

    entry = LambdaEntry(telemetry.PROJECTOR, lambda event, context: seen.append((event, inside["now"])) or event)

    entry.rehearse(lambda n: (n, answered()), lambda reply: reply < 3)
    assert seen == [(0, True), (1, True), (2, True)]

    with pytest.raises(RuntimeError, match="projector priming invocation answered 1"):
        entry.rehearse(lambda n: (n, answered()), lambda reply: reply == 0)


def test_in_lambda_init_primes_now_and_a_restore_makes_the_factories_again(monkeypatch: pytest.MonkeyPatch):
    made: list[int] = []

    @lru_cache(maxsize=1)
    def collaborators() -> int:
        made.append(1)
        return len(made)

    readied: list[int] = []
    primed: list[str] = []
    entry = LambdaEntry(telemetry.STEP_RUNNER, lambda event, context: None)
    monkeypatch.setattr(telemetry, "_registered", [])
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)

    assert entry.init(lambda: primed.append("x"), remake=(collaborators,)) is False  # not in Lambda
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "f")
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    assert entry.init(lambda: primed.append(collaborators()) or None, remake=(collaborators,),
                      ready=lambda: readied.append(collaborators())) is True
    assert primed == [1]

    # A restore whose clients could not renew their credentials (static keys, as SnapStart's are not).
    monkeypatch.setattr("workflow_runs.aws_clients.renew_themselves", lambda: False)
    telemetry.simulate_snapshot_and_restore()

    assert readied == [2]  # the cache was cleared, so `ready` got a new one
