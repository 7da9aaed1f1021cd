"""One skeleton for the four Python Lambda functions' entry modules (the API, the step
runner, the reconciler, the projector), on the model of Powertools' middleware factory: a
plain handler goes in, the function's handler comes out — with its Logger, Tracer and
Metrics (`telemetry.instrument`), built on first use, so importing an entry module builds
nothing. The init phase (`init`: prime now, SnapStart hooks registered) and its rehearsals
(`rehearse`: the whole handler, untraced, its logs and metrics going nowhere) are here too;
an entry module keeps only what is its own — its handler, its correlation keys, what it
primes and what a rehearsal sends.

    entry = LambdaEntry(telemetry.STEP_RUNNER, _handle, correlation=_correlation)
    handler = entry.handler
    ...
    entry.init(prime, remake=(collaborators,), ready=_ready_clients)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from workflow_runs import telemetry

Handler = Callable[[Any, Any], Any]


class Cached(Protocol):
    """A cached factory (`functools.lru_cache`) whose product a restore must make again."""

    def cache_clear(self) -> None: ...


class LambdaEntry:
    def __init__(self, service: str, handle: Handler, *,
                 correlation: Callable[[Any, Any], dict[str, Any]] | None = None) -> None:
        if service not in telemetry.SERVICES:
            raise ValueError(f"unknown service {service!r}")
        self.service = service
        self.handle = handle
        self.correlation = correlation
        self._instrumented: Handler | None = None

    def handler(self, event: Any, context: Any = None) -> Any:
        """The function's handler: `handle` with the function's Logger (correlation keys),
        Tracer and Metrics (flushed after every invocation)."""
        return self.instrumented()(event, context)

    def instrumented(self) -> Handler:
        if self._instrumented is None:  # two threads racing here build two equal wrappers: harmless
            self._instrumented = telemetry.instrument(self.service, self.handle, correlation=self.correlation)
        return self._instrumented

    def cache_clear(self) -> None:
        """Build the instrumented handler again on next use (a test that changed the environment)."""
        self._instrumented = None

    def rehearse(self, round_: Callable[[int], tuple[Any, AbstractContextManager[object]]],
                 accept: Callable[[Any], bool]) -> None:
        """Invocations through the whole handler at init, until the path's code is specialized
        (`rehearsal.rounds()`): `round_(n)` gives the n-th round's event and the context that
        answers its AWS calls in this process; `accept(reply)` says the reply is the one
        expected (otherwise the init fails: a priming that went wrong is a broken build)."""
        from workflow_runs.store import rehearsal

        rehearsed = telemetry.instrument(self.service, self.handle, correlation=self.correlation, traced=False)
        with telemetry.rehearsal(self.service):
            for number in range(rehearsal.rounds()):
                event, answered = round_(number)
                with answered:
                    reply = rehearsed(event, telemetry.RehearsalContext())
                if not accept(reply):
                    raise RuntimeError(f"the {self.service} priming invocation answered {reply!r}")

    def init(self, prime: Callable[[], None], *, remake: Iterable[Cached] = (),
             ready: Callable[[], None] | None = None) -> bool:
        """Call at the entry module's import. In Lambda: `prime()` now (the init phase, which
        SnapStart keeps) and the snapshot hooks registered — after a restore whose clients
        could not renew their credentials, each of `remake` is made again and `ready()` gets
        the new ones ready. Elsewhere: nothing. Returns whether it ran."""
        remade = tuple(remake)

        def after_restore() -> None:
            for cached in remade:
                cached.cache_clear()
            if ready is not None:
                ready()

        return telemetry.lambda_init(prime, after_restore=after_restore)
