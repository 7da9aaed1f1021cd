"""Shared auth test helpers: a real JWKS server on loopback, signing keys, token builders and
the attack table. Test modules import the fixtures they use from here (tests/conftest.py
belongs to the lead)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from workflow_runs.auth import JwtVerifier
from workflow_runs.settings import Settings

ISSUER = "https://issuer.test/"
AUDIENCE = "workflow-runs"
TENANT_CLAIM = "tenant_id"
REFETCH_INTERVAL = 30.0
MAX_KEY_AGE = 300.0


class JwksServer:
    """Serves a JWKS that a test may change while the verifier runs; counts every GET."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jwks: dict[str, Any] = {"keys": []}
        self._requests = 0
        self.failing = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server._requests += 1
                    body = json.dumps(server._jwks).encode()
                    failing = server.failing
                if failing:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/.well-known/jwks.json"

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    def publish(self, *keys: SigningKey) -> None:
        with self._lock:
            self._jwks = {"keys": [key.public_jwk for key in keys]}

    def serve(self, jwks: dict[str, Any]) -> None:
        with self._lock:
            self._jwks = jwks

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@cache
def _rsa_private_key(name: str) -> rsa.RSAPrivateKey:
    # RSA key generation is slow; one key per name for the whole session keeps tests quick,
    # and distinct names still mean distinct keys.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class SigningKey:
    kid: str
    private_key: Any
    alg: str

    @classmethod
    def rsa(cls, kid: str) -> SigningKey:
        return cls(kid, _rsa_private_key(kid), "RS256")

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")

    @property
    def public_jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg.startswith(("RS", "PS")) else ECAlgorithm
        jwk = algorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": self.alg})
        return jwk

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class FakeClock:
    """Monotonic time the test moves by hand: rate-limit windows without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"


_DROP = object()


@dataclass
class Tokens:
    """Builds tokens for the keys the JWKS server publishes (`key`) and for strangers."""

    key: SigningKey
    stranger: SigningKey = field(default_factory=lambda: SigningKey.rsa("stranger"))

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            TENANT_CLAIM: "acme",
            "iat": now,
            "exp": now + 600,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not _DROP}

    def sign(
        self, claims: dict[str, Any], key: SigningKey | None = None, *, kid: str | None = None, alg: str | None = None,
        typ: str | None = "JWT",
    ) -> str:
        """`typ=None` leaves the header's `typ` out."""
        key = key or self.key
        return jwt.encode(
            claims, key.private_key, algorithm=alg or key.alg,
            headers={"kid": kid if kid is not None else key.kid, "typ": typ},
        )

    def valid(self, **overrides: Any) -> str:
        return self.sign(self.claims(**overrides))


def drop() -> Any:
    """Marks a claim to leave out of `Tokens.claims`."""
    return _DROP


def _alg_none(t: Tokens) -> str:
    return unsigned_segments({"alg": "none", "typ": "JWT", "kid": t.key.kid}, t.claims()) + "."


def _hs256_with_public_key(t: Tokens) -> str:
    # The classic confusion attack: the RSA public key's PEM bytes as the HMAC secret.
    signing_input = unsigned_segments({"alg": "HS256", "typ": "JWT", "kid": t.key.kid}, t.claims())
    signature = hmac.new(t.key.public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def _tampered_payload(t: Tokens) -> str:
    # A genuine signature over one tenant, with the payload swapped for another tenant's.
    header, _, signature = t.valid().split(".")
    forged = b64url(json.dumps(t.claims(**{TENANT_CLAIM: "other"})).encode())
    return f"{header}.{forged}.{signature}"


# Every case must be rejected as Unauthorized, by the verifier and over HTTP alike; the
# second item is the reason it must be rejected for (so a case cannot pass by accident).
ATTACKS: dict[str, tuple[Callable[[Tokens], str], str]] = {
    "expired": (lambda t: t.valid(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200), "expired"),
    "not_yet_valid": (lambda t: t.valid(nbf=int(time.time()) + 3600), "not yet valid"),
    "issued_in_the_future": (lambda t: t.valid(iat=int(time.time()) + 3600), "not yet valid"),
    "wrong_audience": (lambda t: t.valid(aud="someone-else"), "audience"),
    "wrong_issuer": (lambda t: t.valid(iss="https://evil.test/"), "issuer"),
    "unknown_key_same_kid": (lambda t: t.sign(t.claims(), t.stranger, kid=t.key.kid), "signature"),
    "unknown_kid": (lambda t: t.sign(t.claims(), t.stranger, kid="not-published"), "unknown key"),
    "no_kid": (lambda t: jwt.encode(t.claims(), t.key.private_key, algorithm="RS256"), "key id"),
    "alg_none": (_alg_none, "algorithm"),
    "hs256_with_rsa_public_key": (_hs256_with_public_key, "algorithm"),
    "asymmetric_alg_outside_allow_list": (lambda t: t.sign(t.claims(), alg="PS256"), "algorithm"),
    "tampered_payload": (_tampered_payload, "signature"),
    "garbage": (lambda t: "not-a-jwt", "malformed"),
    "garbage_three_segments": (lambda t: "a.b.c", "malformed"),
    "oversized": (lambda t: "a" * 20_000, "malformed"),
    "missing_tenant_claim": (lambda t: t.valid(**{TENANT_CLAIM: drop()}), "tenant"),
    "empty_tenant_claim": (lambda t: t.valid(**{TENANT_CLAIM: ""}), "tenant"),
    "non_string_tenant_claim": (lambda t: t.valid(**{TENANT_CLAIM: 42}), "tenant"),
    "tenant_claim_with_key_separator": (lambda t: t.valid(**{TENANT_CLAIM: "acme#WF#x"}), "tenant"),
    "missing_subject": (lambda t: t.valid(sub=drop()), "required claim"),
    "missing_expiry": (lambda t: t.valid(exp=drop()), "required claim"),
    # docs/security.md, "tokens": only access tokens, and time claims that are numbers
    "id_token_type": (lambda t: t.sign(t.claims(), typ="id_token+jwt"), "token type"),
    "logout_token_type": (lambda t: t.sign(t.claims(), typ="logout+jwt"), "token type"),
    "non_string_type": (lambda t: t.sign(t.claims(), typ=7), "token type"),  # type: ignore[arg-type]
    "expiry_as_a_string": (lambda t: t.valid(exp=str(int(time.time()) + 600)), "time claims"),
    "not_before_as_a_string": (lambda t: t.valid(nbf=str(int(time.time()) - 60)), "time claims"),
    "issued_at_as_a_boolean": (lambda t: t.valid(iat=True), "time claims"),
}


def auth_settings(jwks_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "runs_table": "runs",
        "events_table": "events",
        "jwks_url": jwks_url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_tenant_claim": TENANT_CLAIM,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey.rsa("issuer-key-1")


@pytest.fixture
def tokens(signing_key: SigningKey) -> Tokens:
    return Tokens(signing_key)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier(jwks_server: JwksServer, signing_key: SigningKey, clock: FakeClock) -> JwtVerifier:
    """A verifier fetching from the live JWKS server, which publishes `signing_key`."""
    jwks_server.publish(signing_key)
    return JwtVerifier(
        auth_settings(jwks_server.url),
        refetch_interval_seconds=REFETCH_INTERVAL,
        max_key_age_seconds=MAX_KEY_AGE,
        clock=clock,
    )
