"""Idempotency fingerprints: which request an `Idempotency-Key` was first used with.

The claim of a key keeps a fingerprint of the request that made it, so that a repeat (same
fingerprint: the first run is returned) is told from another request under the same key
(409). The request holds `envs` in clear, so the fingerprint is an HMAC-SHA256 under a
server-side key, never a plain hash: a plain SHA-256 of the body would give a short secret
back to anyone who reads the claim item and tries candidates offline.

What is fingerprinted is the request *and its caller's subject*: another caller who reuses a
key always gets 409, whatever `envs` it sends, so the 409 tells it nothing about them.

The key is the server key for LABEL (workflow_runs/serverkey.py): derived from a KMS HMAC
key in AWS, from the local secret key on one machine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workflow_runs.settings import Settings

# The label the key is derived under; a new label (and prefix) would make a new key, and
# claims written under the old one would no longer match (they expire within 24 hours).
LABEL = b"workflow-runs/idempotency-fingerprint/v1"
PREFIX = "v1."


class Fingerprinter:
    def __init__(self, key: bytes):
        if len(key) < 32:
            raise ValueError("the fingerprint key must be at least 32 bytes")
        self._key = key

    def __call__(self, subject: str, request: Any) -> str:
        message = json.dumps({"caller": subject, "request": request}, sort_keys=True, separators=(",", ":"))
        return PREFIX + hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=4)
def get_fingerprinter(settings: Settings) -> Fingerprinter:
    """Keyed from the server key (KMS-derived in AWS, from the local key on one machine)."""
    from workflow_runs.serverkey import server_key

    return Fingerprinter(server_key(settings, LABEL))
