"""Blocking calls (the store, KMS, a JWKS fetch) from `async` routes and dependencies.

Under uvicorn (`workflow-runs dev`) one event loop serves every request and open SSE
stream, so a blocking call goes to anyio's worker threads, which live as long as the
server. Under Mangum one Lambda invocation owns the loop and nothing else runs on it: the
call runs inline, because a worker thread there would be started afresh per invocation
(Mangum runs each invocation as a new root task, and anyio ends a root task's workers
with it). The app says which it is: `app.state.one_request_per_loop` (set by the Lambda
entry point only).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

T = TypeVar("T")


async def call_blocking(connection: HTTPConnection, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    if getattr(connection.app.state, "one_request_per_loop", False) is True:
        return fn(*args, **kwargs)
    return await run_in_threadpool(partial(fn, *args, **kwargs))
