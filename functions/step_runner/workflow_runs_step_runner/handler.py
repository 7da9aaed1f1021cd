"""Lambda entry point of the step runner function (the state machine's RunStep and
RecordFailure tasks; the reconciler's is `workflow_runs_step_runner.reconciler.handler`).

Thin on purpose: collaborators come from cached factories. In Lambda the init phase builds
them and primes the runner (`prime`, no I/O), so with SnapStart a restored environment's
first step costs what a warm one does; anywhere else importing this module builds nothing
and tests import it freely.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from workflow_runs import telemetry
from workflow_runs.lambda_entry import LambdaEntry


class LazySealer:
    """Opens envs with the configured sealer, built only when a run has envs (most steps of
    most runs never need KMS or the cryptography import)."""

    def __init__(self, settings: Any):
        self._settings = settings

    def unseal(self, blob: str, run_id: str) -> dict[str, str]:
        from workflow_runs.secrets import get_sealer

        return get_sealer(self._settings).unseal(blob, run_id)


@lru_cache(maxsize=1)
def collaborators() -> dict[str, Any]:
    from workflow_runs.settings import get_settings
    from workflow_runs.store import RunStore

    settings = get_settings()
    return {"settings": settings, "store": RunStore(settings), "sealer": LazySealer(settings)}


def _handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    from workflow_runs_step_runner.runner import run_step

    return run_step(event, **collaborators())


def _correlation(event: Any, context: Any) -> dict[str, Any]:
    # tenant and step_id are added by the runner once it has read the run.
    return {"run_id": event.get("runId") if isinstance(event, dict) else None}


entry = LambdaEntry(telemetry.STEP_RUNNER, _handle, correlation=_correlation)
handler = entry.handler


def prime() -> None:
    """What a first step would otherwise load or build, without I/O: the runner, every step
    type (and what it imports: the template engine, httpx, …), the models' validators, the
    store and its client, the Powertools objects, then a whole step rehearsed."""
    from workflow_runs.models import ActivityRun, Status, utc_now

    from workflow_runs_step_runner import runner
    from workflow_runs_step_runner.steps import registry
    from workflow_runs_step_runner.steps.templating import render_string

    _ready_clients()
    entry.instrumented()
    for type_name in registry.names():
        registry.get(type_name)
    render_string("{{ inputs.topic }}", {"inputs": {"topic": "priming"}, "steps": {}})
    now = utc_now()
    activity = ActivityRun(id=runner.activity_run_id("priming", 0, 1), step_id="s", step_name="s",
                           status=Status.RUNNING, attempt=1, created_at=now, updated_at=now)
    activity.model_copy(update={"status": Status.COMPLETED}).model_dump(mode="json", by_alias=True)
    _rehearse_a_step()  # last: what it leaves warm is what the first step needs


# The run the init's rehearsals step through (never stored: its reads are answered in-process).
_PRIMING_RUN = "00000000-0000-4000-8000-0000000000a1"


def _rehearse_a_step() -> None:
    """A transform step of a scheduled one-step run, through the whole handler (Powertools'
    wrapper included: its logs and metrics go nowhere), every DynamoDB call answered in this
    process (the run as created, its workflow version as stored, every write a success),
    each round on a version of its own — as a new version's first step reads it and compiles
    its template — until the path's code is specialized."""
    from workflow_runs.store import rehearsal

    store = collaborators()["store"]
    entry.rehearse(lambda number: ({"runId": _PRIMING_RUN, "attempt": 0},
                                    rehearsal.answered_here(store.client,
                                                            rehearsal.step_answers(store, "priming", _PRIMING_RUN, number))),
                    lambda reply: reply.get("next") == "done")


def _ready_clients() -> None:
    from workflow_runs.store import warm_up

    warm_up(collaborators()["store"])  # answered in-process: nothing is sent


# After a restore whose clients could not renew their credentials: made again, and readied.
entry.init(prime, remake=(collaborators,), ready=_ready_clients)
