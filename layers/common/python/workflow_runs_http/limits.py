"""A pure ASGI guard that answers 413 for any body over the documented limit, whether the
client declared its length or streams it."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_body


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """`max_bytes` is the settings' `max_body_bytes`; as a function it is read on the first
    request (the stream app in Lambda reads its settings then)."""

    def __init__(self, app: ASGIApp, max_bytes: int | Callable[[], int]):
        self.app = app
        self._source = max_bytes if callable(max_bytes) else None
        self._max_bytes = None if callable(max_bytes) else max_bytes

    @property
    def max_bytes(self) -> int:
        if self._max_bytes is None:
            assert self._source is not None
            self._max_bytes = self._source()
        return self._max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(error_body("PayloadTooLarge", f"the request body is over {self.max_bytes} bytes")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
