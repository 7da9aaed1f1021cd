"""Cursor pages: the `nextToken` of a list reply.

A token says where the previous page ended (the sort key of its last run). It is sealed
with AES-GCM under a server key, with the tenant and the list's filters as associated
data: opaque to the caller, and any change to it, or its use by another tenant or with
other filters, fails to open (400), so a token can never widen what a caller sees.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any

from .errors import ValidationFailed

_VERSION = b"p1"
_NONCE_BYTES = 12


def _aad(tenant: str, filters: Mapping[str, Any]) -> bytes:
    return json.dumps({"t": tenant, "f": {k: v for k, v in sorted(filters.items()) if v is not None}},
                      separators=(",", ":"), sort_keys=True).encode()


def seal_token(key: bytes, tenant: str, filters: Mapping[str, Any], after: str, page: int) -> str:
    """A token for the page after the one that ended at `after` (which was page `page`)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # only when paging

    nonce = os.urandom(_NONCE_BYTES)
    payload = json.dumps({"a": after, "p": page + 1}, separators=(",", ":")).encode()
    sealed = AESGCM(key).encrypt(nonce, payload, _VERSION + _aad(tenant, filters))
    return base64.urlsafe_b64encode(_VERSION + nonce + sealed).decode().rstrip("=")


def open_token(key: bytes, tenant: str, filters: Mapping[str, Any], token: str) -> tuple[str, int]:
    """(where the previous page ended, the number of the page this token asks for)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    invalid = ValidationFailed(["nextToken: is not a token this list gave out (or the filters changed)"])
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise invalid from None
    version, nonce, sealed = raw[:2], raw[2 : 2 + _NONCE_BYTES], raw[2 + _NONCE_BYTES :]
    if version != _VERSION or len(sealed) < 16:
        raise invalid
    try:
        payload = json.loads(AESGCM(key).decrypt(nonce, sealed, _VERSION + _aad(tenant, filters)))
        return str(payload["a"]), int(payload["p"])
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise invalid from None
