"""Who is calling: JWT verification against the issuer's JWKS, and the internal principal.

Pure PyJWT, no web framework: the HTTP layer (`workflow_runs_http.security`) decides
*whether* a request is internal from evidence the platform attests, and calls into here
for the rest. Every failure is `Unauthorized` (or `ValidationFailed` for a bad
`X-Tenant-Id` on an internal call) with a short message that never echoes the token.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from workflow_runs.errors import Unauthorized, ValidationFailed
from workflow_runs.settings import Settings

if TYPE_CHECKING:  # PyJWT and cryptography cost ~100 ms of cold start: loaded on first use
    from jwt import PyJWK

logger = logging.getLogger("workflow_runs.auth")

# Only public-key algorithms: with a symmetric one (HS*), anyone who knows the *public*
# key could sign a token with it as the HMAC secret; `none` needs no key at all.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

# Tenant ids end up inside DynamoDB keys (`TEN#<tenant>#…`): a `#` or any character outside
# this set could forge another key layout, so it never gets that far.
_TENANT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TENANT_ID_RULE = "1-128 characters of A-Z, a-z, 0-9, '.', '_', ':', '-'"

INTERNAL_SUBJECT = "internal"

# Bounds that keep a hostile header cheap to reject (JWTs from real issuers are a few KB).
MAX_TOKEN_CHARS = 16 * 1024
_MAX_KID_CHARS = 256

# Header `typ` values of an access token (RFC 9068 `at+jwt`, or plain `JWT`), compared without
# case and without an `application/` prefix; an ID token or any other typed JWT is refused.
ACCEPTED_TOKEN_TYPES = frozenset({"jwt", "at+jwt"})
_TIME_CLAIMS = ("exp", "nbf", "iat")

DEFAULT_REFETCH_INTERVAL_SECONDS = 30.0
DEFAULT_MAX_KEY_AGE_SECONDS = 300.0
_JWKS_FETCH_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Principal:
    """The caller every read and write is scoped to: `tenant` is the isolation boundary."""

    subject: str
    tenant: str
    internal: bool


class KeySource(Protocol):
    """Where signing keys come from. `PyJWKClient` is one; the dev identity has an in-memory one."""

    def get_signing_keys(self, refresh: bool = False) -> list[PyJWK]: ...


def is_valid_tenant_id(value: object) -> bool:
    return isinstance(value, str) and _TENANT_ID.fullmatch(value) is not None


def internal_principal(tenant_header: str | None) -> Principal:
    """The principal of a call the platform attests as internal: it acts for `X-Tenant-Id`."""
    if tenant_header is None or not tenant_header.strip():
        raise ValidationFailed("X-Tenant-Id header is required for internal calls")
    if not is_valid_tenant_id(tenant_header):
        # The value is not echoed: it is caller input headed for logs and error bodies.
        raise ValidationFailed(f"X-Tenant-Id must be {TENANT_ID_RULE}")
    return Principal(subject=INTERNAL_SUBJECT, tenant=tenant_header, internal=True)


class JwtVerifier:
    """Verifies bearer tokens against one issuer's JWKS.

    Keys are cached and refreshed after `max_key_age_seconds`. A token whose `kid` is not in
    the cache triggers a refetch, so a rotated-in key works without a restart; but at most one
    fetch happens per `refetch_interval_seconds` (of any kind), so a flood of tokens with
    made-up `kid`s costs the JWKS endpoint one request per interval, not one per token. When a
    refresh fails the last good keys stay in use (an issuer outage does not log everyone out).

    A fetch runs outside the lock, one at a time: while it is in flight, tokens whose key is
    cached are verified at once; only tokens waiting for a key the fetch may bring wait for it.
    """

    def __init__(
        self,
        settings: Settings,
        jwks_client: KeySource | None = None,
        *,
        refetch_interval_seconds: float = DEFAULT_REFETCH_INTERVAL_SECONDS,
        max_key_age_seconds: float = DEFAULT_MAX_KEY_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        # Misconfiguration fails loudly here, never as a silently weaker check.
        if not settings.jwt_issuer or not settings.jwt_audience:
            raise RuntimeError("JWT_ISSUER and JWT_AUDIENCE must be set to verify tokens")
        not_asymmetric = sorted(set(settings.jwt_algorithms) - ASYMMETRIC_ALGORITHMS)
        if not_asymmetric:
            raise RuntimeError(f"JWT_ALGORITHMS may list only asymmetric algorithms, not {not_asymmetric}")
        if not settings.jwt_algorithms:
            raise RuntimeError("JWT_ALGORITHMS lists no algorithm")
        if jwks_client is None:
            if not settings.jwks_url:
                raise RuntimeError("JWKS_URL must be set to verify tokens")
            # PyJWKClient's own caches are off: this class keeps the keys, so that it alone
            # decides when the network is touched (and can keep stale keys on failure).
            from jwt import PyJWKClient  # deferred: cold start

            jwks_client = PyJWKClient(
                settings.jwks_url, cache_jwk_set=False, cache_keys=False, timeout=_JWKS_FETCH_TIMEOUT_SECONDS
            )
        self._source = jwks_client
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._algorithms = frozenset(settings.jwt_algorithms)
        self._leeway = settings.jwt_leeway_seconds
        self._tenant_claim = settings.jwt_tenant_claim
        self._refetch_interval = refetch_interval_seconds
        self._max_key_age = max_key_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, PyJWK] | None = None
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._in_flight: threading.Event | None = None  # set when the running fetch ends

    def verify(self, token: str) -> Principal:
        import jwt  # deferred: cold start

        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise Unauthorized("token algorithm not allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str)
                                or typ.lower().removeprefix("application/") not in ACCEPTED_TOKEN_TYPES):
            raise Unauthorized("token type not accepted")  # e.g. an ID token with the right audience
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_CHARS:
            raise Unauthorized("token has no usable key id")
        key = self._signing_key(kid)
        claims = self._decode(token, key, alg)
        # PyJWT reads a time claim with int(): "9999999999" (a string) would pass as a date.
        if any(not _is_numeric_date(claims[name]) for name in _TIME_CLAIMS if name in claims):
            raise Unauthorized("token time claims must be numbers")

        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("token has no subject")
        tenant = claims.get(self._tenant_claim)
        if not isinstance(tenant, str) or not is_valid_tenant_id(tenant):
            raise Unauthorized("token has no valid tenant claim")
        return Principal(subject=subject, tenant=tenant, internal=False)

    def _decode(self, token: str, key: PyJWK, alg: str) -> dict[str, Any]:
        import jwt  # deferred: cold start
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"], "enforce_minimum_key_length": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("token audience not accepted") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("token issuer not accepted") from None
        except jwt.MissingRequiredClaimError:
            raise Unauthorized("token is missing a required claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("token signature invalid") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None

    def _signing_key(self, kid: str) -> PyJWK:
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self._max_key_age
            keys = self._keys or {}
            if kid in keys and (not stale or self._in_flight is not None):
                return keys[kid]  # fresh, or being refreshed by another request meanwhile
            in_flight, fetching = self._in_flight, False
            if in_flight is None and (self._last_attempt is None or now - self._last_attempt >= self._refetch_interval):
                self._last_attempt = now
                in_flight = self._in_flight = threading.Event()
                fetching = True
        if fetching and in_flight is not None:
            self._fetch_outside_the_lock(now, in_flight)
        elif in_flight is not None:
            in_flight.wait(_JWKS_FETCH_TIMEOUT_SECONDS * 2)  # the key may be in what it brings
        with self._lock:
            key = (self._keys or {}).get(kid)
        if key is None:
            raise Unauthorized("token signed by an unknown key")
        return key

    def _fetch_outside_the_lock(self, started: float, done: threading.Event) -> None:
        fetched = None
        try:
            fetched = self._fetch()
        finally:
            with self._lock:
                if fetched is not None:
                    self._keys, self._fetched_at = fetched, started
                self._in_flight = None
            done.set()

    def _fetch(self) -> dict[str, PyJWK] | None:
        import jwt  # deferred: cold start
        try:
            signing_keys = self._source.get_signing_keys(refresh=True)
        except (jwt.PyJWTError, ValueError, OSError) as exc:
            # Logged for operators; the caller only learns that its token was not accepted.
            logger.warning("jwks fetch failed", extra={"error": type(exc).__name__})
            return None
        return {key.key_id: key for key in signing_keys if key.key_id and key.algorithm_name in ASYMMETRIC_ALGORITHMS}


def _is_numeric_date(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@lru_cache(maxsize=8)
def get_verifier(settings: Settings) -> JwtVerifier:
    """One verifier (and so one key cache) per settings, built on first use."""
    return JwtVerifier(settings)
