"""Keys for what the server keys or seals for itself, one per purpose (idempotency
fingerprints, list page tokens), 32 bytes each, held in memory only.

- In AWS, derived from one KMS HMAC key (`FINGERPRINT_KMS_KEY_ID`): one `GenerateMac` over
  the purpose's label on first use per process; the KMS key itself never leaves KMS.
- On one machine, derived with HKDF from `LOCAL_SECRET_KEY`, which `workflow-runs dev`
  generates at start.
No key, no keying: a missing setting fails loudly instead of falling back to something
guessable.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workflow_runs.settings import Settings


@lru_cache(maxsize=16)
def server_key(settings: Settings, label: bytes) -> bytes:
    if settings.fingerprint_kms_key_id:
        return kms_derived_key(settings.fingerprint_kms_key_id, label)
    if settings.local_secret_key:
        from workflow_runs.secrets import local_key

        return local_derived_key(local_key(settings.local_secret_key), label)
    raise RuntimeError("no server key: set FINGERPRINT_KMS_KEY_ID (AWS) or LOCAL_SECRET_KEY (one machine)")


def kms_derived_key(key_id: str, label: bytes, client: Any = None) -> bytes:
    """HMAC-SHA256 of the label under the KMS HMAC key: a pseudo-random key only KMS can remake."""
    if client is None:
        from . import aws_clients  # deferred: most requests need no server key

        client = aws_clients.make("kms")
    return bytes(client.generate_mac(KeyId=key_id, MacAlgorithm="HMAC_SHA_256", Message=label)["Mac"])


def local_derived_key(local_secret_key: bytes, label: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes  # deferred: cold start
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(local_secret_key)
