"""The step runner's entry module: at init (in Lambda) it rehearses a whole step through the
handler, every DynamoDB call answered in this process."""

from __future__ import annotations

import pytest
from workflow_runs.store import RunStore, dynamodb_client
from workflow_runs.store import rehearsal as rehearsal_module
from workflow_runs_step_runner import handler as handler_module
from workflow_runs_step_runner.steps import registry

from tests.support import make_settings

NOWHERE = "http://127.0.0.1:9"  # the discard port: a request that left would fail


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> RunStore:
    settings = make_settings(NOWHERE)
    dynamodb_client.cache_clear()
    store = RunStore(settings, client=dynamodb_client(NOWHERE))
    monkeypatch.setattr(handler_module, "collaborators",
                        lambda: {"settings": settings, "store": store, "sealer": handler_module.LazySealer(settings)})
    return store


def test_the_rehearsal_runs_a_whole_step_each_round_and_sends_nothing(unreachable: RunStore,
                                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(rehearsal_module, "rounds", lambda: 3)
    sent: list[str] = []
    unreachable.client.meta.events.register("before-call.dynamodb", lambda model, **_: sent.append(model.name))
    ran: list[str] = []
    transform = registry.get("transform")
    monkeypatch.setattr(registry, "get", lambda name: ran.append(name) or transform)

    handler_module._rehearse_a_step()  # would raise EndpointConnectionError had anything left

    assert ran == ["transform"] * 3
    # Each round as a new version's first step: the run's Query, its version's GetItem (a
    # version of its own, so not cached), the move to running with the step's start, the step's
    # end, the run's end.
    assert sent == ["Query", "GetItem", "TransactWriteItems", "PutItem", "TransactWriteItems"] * 3

