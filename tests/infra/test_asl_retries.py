"""The state machine's step retriers are written from `workflow_runs.retry_rules` (the
rule's one home, which the local orchestrator and the run-class bound also read):
infra/state_machine.asl.json is what `python -m infra.asl` makes of it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from workflow_runs import retry_rules

from infra import asl


def test_the_asl_holds_the_retry_rules_as_generated():
    text = asl.ASL_FILE.read_text()
    assert asl.render(text) == text, "run `python -m infra.asl` (the retry rules changed)"


def test_each_rule_is_the_retrier_the_state_machine_runs():
    states = json.loads(asl.ASL_FILE.read_text())["States"]
    for (state, error), rule in retry_rules.ASL_RETRIERS.items():
        (retrier,) = [r for r in states[state]["Retry"] if r["ErrorEquals"][0] == error]
        assert retrier == {"ErrorEquals": list(rule.errors), **rule.asl()}


def test_a_changed_rule_changes_the_asl(monkeypatch: pytest.MonkeyPatch):
    changed = replace(retry_rules.STEP_RETRY, interval_seconds=3, max_attempts=4)
    monkeypatch.setitem(retry_rules.ASL_RETRIERS, ("RunStep", "StepRetryableError"), changed)
    retrier = json.loads(asl.render(asl.ASL_FILE.read_text()))["States"]["RunStep"]["Retry"][0]
    assert (retrier["IntervalSeconds"], retrier["MaxAttempts"]) == (3, 4)
