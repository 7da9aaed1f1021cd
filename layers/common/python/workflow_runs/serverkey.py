"""Keys for what the server signs or seals for itself (list page tokens), one per purpose.

Each purpose gets its own key, derived (HMAC-SHA256) from one server secret: in AWS a
Secrets Manager secret (`SERVER_KEY_SECRET_ARN`, read once per process), on one machine the
local secret key the dev runtime generates. No key, no signing: a missing setting fails
loudly instead of signing with something guessable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache
from typing import Any

from .settings import Settings


@lru_cache(maxsize=16)
def server_key(settings: Settings, purpose: str) -> bytes:
    return hmac.new(_root(settings), purpose.encode(), hashlib.sha256).digest()


@lru_cache(maxsize=4)
def _root(settings: Settings) -> bytes:
    if settings.local_secret_key:
        return base64.b64decode(settings.local_secret_key, validate=True)
    if settings.server_key_secret_arn:
        return _secret_value(settings.server_key_secret_arn).encode()
    raise RuntimeError("missing required setting: SERVER_KEY_SECRET_ARN (or LOCAL_SECRET_KEY on one machine)")


def _secret_value(arn: str, client: Any = None) -> str:
    if client is None:
        import boto3  # noqa: PLC0415 - only in AWS, on the first signed page

        client = boto3.client("secretsmanager")
    return str(client.get_secret_value(SecretId=arn)["SecretString"])
