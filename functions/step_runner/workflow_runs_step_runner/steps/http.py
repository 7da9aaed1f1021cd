"""`http`: one HTTP request with httpx, guarded against server-side request forgery.

The guard resolves the host once, refuses loopback, private, link-local, reserved, multicast,
unspecified and cloud-metadata addresses (and IPv4-mapped / NAT64 forms of them) unless the
host is listed in `settings.http_step_allowed_hosts`, then connects to exactly the address it
checked: the request URL is rewritten to that IP, while the Host header and the TLS SNI /
certificate check keep the original name. There is no second DNS lookup, so no rebinding
window. Redirects are followed here, not by httpx, so every hop goes through the same guard,
and only as `followRedirects` allows: by default within the origin only. Leaving the origin
drops every header the workflow set and the body; https never redirects to http.

The whole exchange — resolving, connecting, every hop, reading the body — runs under one
deadline (`timeoutSeconds`): a server that trickles its headers a byte at a time cannot
stretch a step past it. (httpx's own timeouts bound each read, not the sum of them.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import httpx

from workflow_runs_step_runner.steps.base import StepContext, StepError, StepOutcome
from workflow_runs_step_runner.steps.templating import render

# host, port -> IP address strings, best first (getaddrinfo's order). Tests inject their own.
Resolver = Callable[[str, int], list[str]]

MAX_REDIRECTS = 5
# Outputs live in the activity item (DynamoDB items are ≤ 400 KB): the body is cut here.
MAX_BODY_BYTES = 64 * 1024
MAX_TIMEOUT_SECONDS = 300.0
SAFE_RESPONSE_HEADERS = frozenset(
    {"content-type", "content-length", "content-language", "etag", "last-modified", "cache-control",
     "expires", "date", "location", "retry-after", "x-request-id"}
)
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# `followRedirects`: True follows any origin, False none, SAME_ORIGIN (the default) only hops
# that keep scheme, host and port. A redirect not followed is the step's answer.
SAME_ORIGIN = "same-origin"
_DEFAULT_PORTS = {"http": 80, "https": 443}

METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
     ipaddress.ip_address("100.100.100.200")}  # AWS IPv4 / IPv6 (IMDS), Alibaba
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Ranges the IANA special-purpose registries mark not globally reachable that the standard
# library of the Python we run on may still call global (its list grows with each release):
# 3.11 calls the deprecated site-local `fec0::/10`, the documentation range `3fff::/20`
# (RFC 9637), 6to4 `2002::/16` and `192.0.0.0/24` global.
_NOT_GLOBAL = tuple(ipaddress.ip_network(n) for n in (
    "192.0.0.0/24", "2002::/16", "3fff::/20", "fec0::/10"))
_GLOBAL_EXCEPTIONS = frozenset(ipaddress.ip_address(a) for a in ("192.0.0.9", "192.0.0.10"))


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_globally_routable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """The standard library's `is_global`, plus the ranges older Pythons miss (`_NOT_GLOBAL`)."""
    if ip in _GLOBAL_EXCEPTIONS:
        return True
    return ip.is_global and not any(ip in network for network in _NOT_GLOBAL)


def refusal_reason(address: str) -> str | None:
    """Why connecting to `address` is refused, or None when it is a globally routable address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 scope id
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            inner = refusal_reason(str(embedded))
            if inner:
                return f"{inner} (embedded in an IPv6 address)"
    for flag, label in (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(ip, flag):
            return label
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if not is_globally_routable(ip):  # shared (100.64/10), documentation and other special ranges
        return "a non-public address"
    return None


def _normalise_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


class AddressGuard:
    """Resolves a host once and returns the one address the connection will use."""

    def __init__(self, allowed_hosts: tuple[str, ...], resolver: Resolver):
        self._allowed = frozenset(_normalise_host(h) for h in allowed_hosts)
        self._resolver = resolver

    def pick(self, host: str, port: int) -> str:
        name = _normalise_host(host)
        try:
            addresses = [str(ipaddress.ip_address(name))]
        except ValueError:
            try:
                addresses = self._resolver(name, port)
            except OSError as exc:  # socket.gaierror: DNS may recover, so it is retryable
                raise StepError(f"http: could not resolve {name}: {exc}", retryable=True) from None
        if not addresses:
            raise StepError(f"http: {name} resolved to no address", retryable=True)
        if name not in self._allowed:
            for address in addresses:
                reason = refusal_reason(address)
                if reason:
                    shown = f"{name} is" if name == address else f"{name} resolves to {address}, which is"
                    raise StepError(
                        f"http: refused: {shown} {reason}; list the host in HTTP_STEP_ALLOWED_HOSTS "
                        "to allow it", retryable=False)
        return addresses[0]


@lru_cache(maxsize=1)
def _resolver_pool() -> ThreadPoolExecutor:
    # Lookups run here so that the deadline can stop waiting for one; a lookup that hangs
    # ends in its own time, without holding the step (asyncio.run would wait for a thread of
    # its default executor).
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="http-step-resolve")


class GuardedTransport(httpx.AsyncBaseTransport):
    """Sends each request to the address the guard checked, keeping Host and SNI."""

    def __init__(self, inner: httpx.AsyncBaseTransport, guard: AddressGuard):
        self._inner = inner
        self._guard = guard

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise StepError(f"http: refused scheme {url.scheme!r} (only http and https)", retryable=False)
        port = url.port or _DEFAULT_PORTS[url.scheme]
        address = await asyncio.get_running_loop().run_in_executor(_resolver_pool(), self._guard.pick, url.host, port)
        # The Host header was set from the original URL when the request was built.
        request.url = url.copy_with(host=address)
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": _normalise_host(url.host)}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@lru_cache(maxsize=1)
def _quiet_http_client_logs() -> None:
    """httpx logs every request URL at INFO and httpcore its headers at DEBUG, unmasked: a
    secret in a step's URL or headers would reach the logs. Only their warnings pass."""
    import logging

    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


@lru_cache(maxsize=1)
def _default_ssl_context():
    import ssl

    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class HttpStep:
    name = "http"

    def __init__(self, *, resolver: Resolver | None = None, ssl_context: Any = None):
        self._resolver = resolver or system_resolver
        self._ssl_context = ssl_context

    def run(self, ctx: StepContext) -> StepOutcome:
        _quiet_http_client_logs()
        config = render(ctx.step.config, ctx)
        method = str(config.get("method") or "GET").upper()
        url = config.get("url")
        if not isinstance(url, str) or not url:
            raise StepError("config.url must render to a non-empty string")
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise StepError(f"config.url is not a valid URL: {exc}") from None
        if target.scheme not in ("http", "https") or not target.host:
            raise StepError(f"http: refused URL {_safe(target)} (only http and https URLs with a host)")
        timeout = _timeout(config.get("timeoutSeconds"), ctx.settings.http_step_timeout_seconds)
        follow = _follow_redirects(config.get("followRedirects", SAME_ORIGIN))
        request_args = _request_args(config)
        guard = AddressGuard(ctx.settings.http_step_allowed_hosts, self._resolver)
        try:
            status, headers, raw, truncated, final = asyncio.run(
                self._exchange(guard, method, target, request_args, follow, timeout))
        except (TimeoutError, httpx.TimeoutException):
            raise StepError(f"http: {method} {_safe(target)} timed out after {timeout:g}s", retryable=True) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise StepError(f"http: {method} {_safe(target)} failed: {exc}", retryable=False) from None
        except httpx.TransportError as exc:
            raise StepError(
                f"http: {method} {_safe(target)} failed: {type(exc).__name__}: {exc}", retryable=True) from None
        if status >= 500 or status == 429:
            raise StepError(f"http: {method} {_safe(final)} answered {status}", retryable=True)
        if status >= 400:
            raise StepError(f"http: {method} {_safe(final)} answered {status}", retryable=False)
        return StepOutcome(outputs={
            "statusCode": status,
            "headers": {k: v for k, v in headers.items() if k in SAFE_RESPONSE_HEADERS},
            "body": _decode(raw, headers.get("content-type", ""), truncated),
            "truncated": truncated,
        })


    async def _exchange(self, guard: AddressGuard, method: str, url: httpx.URL, args: dict[str, Any],
                        follow: bool | str, timeout: float):
        transport = GuardedTransport(
            httpx.AsyncHTTPTransport(verify=self._ssl_context or _default_ssl_context(), retries=0), guard)
        # trust_env=False: a proxy from the environment would bypass the pinned address.
        async with httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False,
                                     trust_env=False) as client:
            async with asyncio.timeout(timeout):  # one deadline for everything, not per read
                return await _send(client, method, url, args, follow)


async def _send(client: httpx.AsyncClient, method: str, url: httpx.URL, args: dict[str, Any], follow: bool | str):
    """Send, following redirects by hand as `follow` allows (at most MAX_REDIRECTS); every
    hop passes the guard."""
    headers = dict(args.pop("headers"))
    for hop in range(MAX_REDIRECTS + 1):
        request = client.build_request(method, url, headers=headers, **args)
        response = await client.send(request, stream=True)
        try:
            next_url = _redirect_target(response, url, follow)
            if next_url is not None:
                if hop == MAX_REDIRECTS:
                    raise StepError(f"http: more than {MAX_REDIRECTS} redirects from {_safe(url)}", retryable=False)
                if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                    method = "GET" if method != "HEAD" else method
                    args = {}
                if _origin(next_url) != _origin(url):
                    if args and response.status_code in (307, 308):
                        raise StepError(f"http: refused to send the request body to another origin "
                                        f"({_safe(next_url)}) on a {response.status_code} redirect", retryable=False)
                    # Nothing the workflow wrote (credentials, cookies, its body) leaves its origin.
                    headers, args = {}, {}
                url = next_url
                continue
            raw, truncated = bytearray(), False
            async for chunk in response.aiter_bytes():
                raw += chunk
                if len(raw) > MAX_BODY_BYTES:
                    del raw[MAX_BODY_BYTES:]
                    truncated = True
                    break
            return response.status_code, response.headers, bytes(raw), truncated, url
        finally:
            await response.aclose()
    raise AssertionError("unreachable")


def _redirect_target(response: httpx.Response, url: httpx.URL, follow: bool | str) -> httpx.URL | None:
    """Where a redirect leads, when it is to be followed; None when `response` is the answer."""
    location = response.headers.get("location")
    if response.status_code not in REDIRECT_CODES or not location:
        return None
    target = url.join(location)
    if target.scheme not in ("http", "https"):
        raise StepError(f"http: refused redirect to scheme {target.scheme!r}", retryable=False)
    if follow is False or (follow == SAME_ORIGIN and _origin(target) != _origin(url)):
        return None
    if url.scheme == "https" and target.scheme == "http":
        raise StepError(f"http: refused a redirect from https to http ({_safe(target)})", retryable=False)
    return target


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, _normalise_host(url.host), url.port or _DEFAULT_PORTS.get(url.scheme, 0)


def _follow_redirects(value: Any) -> bool | str:
    if value is True or value is False or value == SAME_ORIGIN:
        return value
    raise StepError(f"config.followRedirects must be true, false or {SAME_ORIGIN!r}")


def _request_args(config: Mapping[str, Any]) -> dict[str, Any]:
    raw_headers = config.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise StepError("config.headers must be an object")
    headers = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_headers.items() if v is not None}
    args: dict[str, Any] = {"headers": headers}
    if "json" in config:
        args["json"] = config["json"]
    elif "body" in config and config["body"] is not None:
        body = config["body"]
        if isinstance(body, str):
            args["content"] = body.encode()
        else:  # an object or list written in YAML/JSON is sent as JSON
            args["json"] = body
    return args


def _timeout(value: Any, default: float) -> float:
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise StepError(f"config.timeoutSeconds must be a number above 0 and at most {MAX_TIMEOUT_SECONDS:g}")
    return float(value)


def _decode(raw: bytes, content_type: str, truncated: bool) -> Any:
    media = content_type.split(";", 1)[0].strip().lower()
    if not truncated and raw and (media == "application/json" or media.endswith("+json")):
        try:
            return json.loads(raw)
        except ValueError:
            pass  # a server that lies about JSON still gets its text recorded
    charset = "utf-8"
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip('"')
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def _safe(url: httpx.URL) -> str:
    """The URL without credentials or query string: fit for errors and logs."""
    port = f":{url.port}" if url.port else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}{port}{url.path}"
