"""Idempotency fingerprints: which request an `Idempotency-Key` was first used with.

The claim of a key keeps a fingerprint of the request that made it, so that a repeat (same
fingerprint: the first run is returned) is told from another request under the same key
(409). The request holds `envs` in clear, so the fingerprint is an HMAC-SHA256 under a
server-side key, never a plain hash: a plain SHA-256 of the body would give a short secret
back to anyone who reads the claim item and tries candidates offline.

What is fingerprinted is the request *and its caller's subject*: another caller who reuses a
key always gets 409, whatever `envs` it sends, so the 409 tells it nothing about them.

The key, 32 bytes, held in memory only:
- in AWS, derived from a KMS HMAC key (`FINGERPRINT_KMS_KEY_ID`): one `GenerateMac` over a
  fixed label on first use per process; the KMS key itself never leaves KMS;
- on one machine, derived with HKDF from `LOCAL_SECRET_KEY`, which `workflow-runs dev`
  generates at start.
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


def kms_derived_key(key_id: str, client: Any = None) -> bytes:
    """HMAC-SHA256 of LABEL under the KMS HMAC key: a pseudo-random key only KMS can remake."""
    if client is None:
        import boto3  # noqa: PLC0415 - deferred: most requests never fingerprint

        client = boto3.client("kms")
    return client.generate_mac(KeyId=key_id, MacAlgorithm="HMAC_SHA_256", Message=LABEL)["Mac"]


def local_derived_key(local_secret_key: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 - deferred: cold start
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: PLC0415

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL).derive(local_secret_key)


@lru_cache(maxsize=4)
def get_fingerprinter(settings: Settings) -> Fingerprinter:
    """KMS-derived when FINGERPRINT_KMS_KEY_ID is set, else from the local key; else an error."""
    if settings.fingerprint_kms_key_id:
        return Fingerprinter(kms_derived_key(settings.fingerprint_kms_key_id))
    if settings.local_secret_key:
        from workflow_runs.secrets import local_key  # noqa: PLC0415

        return Fingerprinter(local_derived_key(local_key(settings.local_secret_key)))
    raise RuntimeError(
        "no key for idempotency fingerprints: set FINGERPRINT_KMS_KEY_ID (AWS) or LOCAL_SECRET_KEY (one machine)")
