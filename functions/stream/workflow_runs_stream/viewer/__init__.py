"""The run viewer: three static files (index.html, viewer.css, viewer.js) served at `/viewer/`
by a framework-free ASGI app, with a strict Content-Security-Policy.

No build step and no framework: the page's one JavaScript module talks to this API through
relative URLs only (so the token never leaves the page's origin) and writes what it shows
with `textContent`, never `innerHTML` (step outputs are user data).

Mount it anywhere; it serves the path after its mount point:
  - the dev server's `route_by_function` sends `/viewer` and `/viewer/...` here;
  - in a Starlette/FastAPI app: `app.mount("/viewer", viewer_app())`.
The files are read once, on the first request (importing this module reads nothing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from functools import cache
from importlib.resources import files
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MOUNT = "/viewer"
# Only this origin, for everything; no inline script or style, no frames, no forms posting away.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/viewer.css": ("viewer.css", "text/css; charset=utf-8"),
    "/viewer.js": ("viewer.js", "text/javascript; charset=utf-8"),
}
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-cache"),
]


@cache
def _asset(name: str) -> bytes:
    return files(__package__).joinpath(name).read_bytes()


def relative_path(scope: Scope, mount: str = MOUNT) -> str:
    """The path below the viewer's mount point, whether a router stripped it or not
    (Starlette's Mount leaves `path` whole and sets `root_path`)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    if path == mount or path.startswith(mount + "/"):
        path = path[len(mount):]
    return path


def viewer_app(mount: str = MOUNT) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = relative_path(scope, mount)
        method = scope.get("method", "GET")
        if path == "":
            # `/viewer` → `/viewer/`, relatively: the page's own relative URLs need the slash.
            last = scope.get("path", "").rstrip("/").rsplit("/", 1)[-1] or "viewer"
            await _respond(send, 308, b"", "text/plain; charset=utf-8", [(b"location", f"{last}/".encode())])
            return
        found = FILES.get(path)
        if found is None:
            await _respond(send, 404, b"not found\n", "text/plain; charset=utf-8")
            return
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain; charset=utf-8",
                           [(b"allow", b"GET, HEAD")])
            return
        name, content_type = found
        body = _asset(name)
        await _respond(send, 200, b"" if method == "HEAD" else body, content_type, length=len(body))

    return app


async def _respond(send: Send, status: int, body: bytes, content_type: str,
                   extra: list[tuple[bytes, bytes]] | None = None, length: int | None = None) -> None:
    headers = [(b"content-type", content_type.encode()),
               (b"content-length", str(len(body) if length is None else length).encode()),
               *SECURITY_HEADERS, *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
