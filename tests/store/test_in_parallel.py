"""The store's parallel reads run in the caller's context (workflow_runs.store.queries.in_parallel):
what a request's context carries (the function whose calls they are) reaches every read."""

from __future__ import annotations

import contextvars
import threading

from workflow_runs.store.queries import in_parallel

function: contextvars.ContextVar[str] = contextvars.ContextVar("function", default="nobody")


def test_every_parallel_read_sees_the_callers_context_and_the_results_keep_their_order():
    function.set("api")
    threads: set[str] = set()

    def read(n: int):
        def call() -> tuple[int, str]:
            threads.add(threading.current_thread().name)
            return n, function.get()
        return call

    assert in_parallel([read(n) for n in range(8)]) == [(n, "api") for n in range(8)]
    assert any(name.startswith("store-read") for name in threads)  # they did run on the pool
