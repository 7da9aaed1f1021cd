"""CORS for every HTTP app of ours, as one pure ASGI middleware (docs/api.md, "CORS").

Import-light on purpose: no web framework, so the API app (FastAPI), the stream app
(Starlette) and the dev server's listeners all wrap themselves with the same code.

- A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from a listed
  origin answers 204 here, on any path, without reaching the app.
- A preflight from an origin not listed answers 403 `Forbidden`, with no CORS header: the
  browser refuses the call, and whoever reads the network tab sees why.
- Every other response (errors, 401s and streams included) from a listed origin carries
  `Access-Control-Allow-Origin: <that origin>`, `Vary: Origin` and the exposed headers.
  An origin not listed (or no `Origin`) reaches the app as any request does; its response
  carries only `Vary: Origin`, so a browser refuses to hand it to a page of that origin.
- No origins: the middleware steps aside entirely (no CORS header at all).

Nested instances are harmless: the outermost one answers, inner ones pass through (the
dev server wraps both apps of a listener, and each app may wrap itself for Lambda).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from workflow_runs.origins import checked_origins

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Any app of three arguments (Starlette, FastAPI, a plain function) is one.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

ALLOW_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, If-Match, X-Tenant-Id"
EXPOSE_HEADERS = "Location, ETag, Retry-After"
MAX_AGE_SECONDS = 600
# Set in the scope by the outermost instance; inner ones see it and pass through.
HANDLED = "workflow_runs.cors"


class CorsMiddleware:
    """`CorsMiddleware(app, allow_origins=("https://app.example.com", ...))`. `*` is refused
    (ValueError), as every reader of allowed origins refuses it. `allow_origins` may be a
    function, read on the first request: the stream app in Lambda reads its settings then
    (its import loads no pydantic), and the settings are the one reader of the environment."""

    def __init__(self, app: ASGIApp, allow_origins: Iterable[str] | Callable[[], Iterable[str]] = (), *,
                 max_age: int = MAX_AGE_SECONDS):
        self.app = app
        self._source = allow_origins if callable(allow_origins) else None
        self._origins: frozenset[str] | None = None if callable(allow_origins) else _checked(allow_origins)
        self.max_age = max_age

    @property
    def allow_origins(self) -> frozenset[str]:
        if self._origins is None:
            assert self._source is not None
            self._origins = _checked(self._source())
        return self._origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.allow_origins or scope.get(HANDLED):
            await self.app(scope, receive, send)
            return
        scope[HANDLED] = True
        origin = _header(scope, b"origin")
        allowed = origin is not None and origin in self.allow_origins
        preflight = scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method") is not None
        if origin is not None and preflight:
            await (self._preflight(origin, send) if allowed else _refuse(send))
            return
        # Whatever the origin (or none), the answer depends on it: caches must key on it.
        added = [(b"vary", b"Origin")]
        if origin is not None and allowed:
            added += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
            ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                message["headers"] = headers + _merged_vary(message.get("headers", []), added)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, origin: str, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-max-age", str(self.max_age).encode()),
            (b"vary", b"Origin"),
        ]})
        await send({"type": "http.response.body", "body": b""})


_OURS = {b"access-control-allow-origin", b"access-control-expose-headers", b"vary"}


def _merged_vary(existing: list[tuple[bytes, bytes]], added: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Our headers, with any `Vary` the app set kept beside `Origin`."""
    vary = [v.decode("latin-1") for k, v in existing if k.lower() == b"vary"]
    values = [p.strip() for v in vary for p in v.split(",") if p.strip() and p.strip().lower() != "origin"]
    merged = ", ".join([*values, "Origin"]).encode("latin-1")
    return [(k, merged if k == b"vary" else v) for k, v in added]


def _checked(origins: Iterable[str]) -> frozenset[str]:
    return frozenset(o.rstrip("/") for o in checked_origins(tuple(origins), "allow_origins"))


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v for k, v in scope.get("headers") or [] if k.lower() == name]
    return values[0].decode("latin-1") if len(values) == 1 else None


async def _refuse(send: Send) -> None:
    body = json.dumps({"success": False, "error": "Forbidden",
                       "details": "this origin may not call the API (CORS_ALLOW_ORIGINS)"}).encode()
    await send({"type": "http.response.start", "status": 403, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"vary", b"Origin"),
    ]})
    await send({"type": "http.response.body", "body": body})

