"""The dev identity: a throwaway signing key for `workflow-runs dev` when `JWKS_URL` is unset.

FOR ONE-MACHINE DEVELOPMENT ONLY. The key pair lives in memory for the life of the dev
server and is never written anywhere; its tokens are accepted only by a verifier built from
this identity, never by a deployed stack (which verifies against its configured issuer).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWK
from jwt.algorithms import RSAAlgorithm

from workflow_runs.auth import JwtVerifier
from workflow_runs.settings import Settings

DEV_ISSUER = "workflow-runs-dev"
DEV_AUDIENCE = "workflow-runs"
DEV_ALGORITHM = "RS256"
JWKS_PATH = "/.well-known/jwks.json"
DEFAULT_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class DevIdentity:
    private_key: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def generate(cls) -> DevIdentity:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(private_key=key, kid=f"dev-{secrets.token_hex(8)}")

    @property
    def issuer(self) -> str:
        return DEV_ISSUER

    @property
    def audience(self) -> str:
        return DEV_AUDIENCE

    @property
    def jwks(self) -> dict[str, Any]:
        """The body of `/.well-known/jwks.json`: the public half only."""
        jwk = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": DEV_ALGORITHM})
        return {"keys": [jwk]}

    def token(
        self,
        tenant: str = "dev",
        subject: str = "dev-user",
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        *,
        tenant_claim: str = "tenant_id",
        now: float | None = None,
    ) -> str:
        """A signed bearer token for `tenant` (long-lived by default: it is printed once at start)."""
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "sub": subject,
            tenant_claim: tenant,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_seconds,
        }
        return jwt.encode(claims, self.private_key, algorithm=DEV_ALGORITHM, headers={"kid": self.kid})

    def settings_for(self, settings: Settings, jwks_url: str | None = None) -> Settings:
        """`settings` with the issuer, audience and algorithm this identity signs with."""
        update: dict[str, Any] = {
            "jwt_issuer": DEV_ISSUER,
            "jwt_audience": DEV_AUDIENCE,
            "jwt_algorithms": (DEV_ALGORITHM,),
        }
        if jwks_url is not None:
            update["jwks_url"] = jwks_url
        return settings.model_copy(update=update)

    def key_source(self) -> StaticKeySource:
        return StaticKeySource(self.jwks)

    def verifier(self, settings: Settings) -> JwtVerifier:
        """A verifier that accepts this identity's tokens, reading the keys from memory.

        The dev server also serves `jwks` over HTTP for other clients; its own verifier does
        not fetch from itself (no request to its own event loop while it handles one).
        """
        return JwtVerifier(self.settings_for(settings), self.key_source())


class StaticKeySource:
    """A fixed JWKS held in memory (the `KeySource` of the dev identity)."""

    def __init__(self, jwks: dict[str, Any]):
        self._keys = [PyJWK(jwk) for jwk in jwks["keys"]]

    def get_signing_keys(self, refresh: bool = False) -> list[PyJWK]:
        return list(self._keys)
