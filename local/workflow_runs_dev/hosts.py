"""The dev server's listeners answer only a `Host` that names them (DNS rebinding).

A web page on any site can make a browser send requests to 127.0.0.1 under a name it
controls (`rebind.attacker.example` resolving first to its own server, then to 127.0.0.1).
The browser then treats the dev server as that site's origin: same-origin, no CORS asked.
The internal listener believes `X-Tenant-Id`, so such a page could act as any tenant. What
the browser cannot change is the `Host` header, which carries the attacker's name. So a
listener answers only when `Host` names it:

- `localhost`, `127.0.0.1` or `[::1]`, or the address it is bound to, with its own port
  (no port is read as 80);
- bound to every interface (`--host 0.0.0.0` or `::`), also any IP literal with its port:
  an address, unlike a name, cannot be rebound.

Anything else (another name, another port, no `Host` at all) is 400 `ValidationError`
before the app sees the request. Pure ASGI; the port is the listener's own (`scope["server"]`),
so it holds for a listener on port 0 too.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", ""})


def split_host(value: str) -> tuple[str, int | None] | None:
    """`host[:port]` or `[v6][:port]` → (lower-case host without brackets or a final dot, port);
    None when it does not parse."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            host, port_text = value, None
        if ":" in host:
            return None  # an IPv6 literal without brackets
    if port_text is not None and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        return None
    host = host.rstrip(".").lower()
    return (host, int(port_text) if port_text is not None else None) if host else None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_names_listener(host_header: str, bound_host: str, port: int) -> bool:
    """Whether a `Host` header value names the listener bound to `bound_host`:`port`."""
    parsed = split_host(host_header)
    if parsed is None:
        return False
    name, given_port = parsed
    if (given_port or 80) != port:
        return False
    bound = bound_host.strip("[]").lower()
    if name in LOOPBACK_NAMES or name == bound:
        return True
    return bound in WILDCARD_ADDRESSES and _is_ip_literal(name)


class HostGuard:
    """`HostGuard(app, bound_host)`: refuses requests whose `Host` does not name the listener."""

    def __init__(self, app: Any, bound_host: str):
        self.app = app
        self.bound_host = bound_host

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            hosts = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"]
            port = (scope.get("server") or (None, None))[1]
            if len(hosts) != 1 or port is None or not host_names_listener(hosts[0], self.bound_host, port):
                await _refuse(send, hosts[0] if len(hosts) == 1 else None)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Any, host: str | None) -> None:
    shown = "no Host header" if host is None else f"Host {host[:100]!r}"
    body = json.dumps({"success": False, "error": "ValidationError",
                       "details": f"{shown} does not name this server; call it as http://127.0.0.1:<port> "
                                  "or http://localhost:<port>"}).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
