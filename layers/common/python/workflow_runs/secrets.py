"""The secrets of a run (`envs`): masked wherever they could surface, sealed wherever they rest.

- `mask()` replaces every `envs` value (and its JSON-escaped, percent-encoded and base64 forms)
  inside outputs, errors and log fields; `StreamMasker` does the same for text that arrives in
  chunks (thinking), across chunk boundaries.
- A `Sealer` turns a run's `envs` into an opaque, versioned blob bound to the run id, and back.
  `KmsSealer` (AWS) uses envelope encryption: one KMS data key per run, encryption context
  `{"runId": …}` (and `"purpose"` for anything but a run's envs: an approval's task token is
  sealed with `{"runId": "<run>/approval/<step>", "purpose": "approval-token"}`, so a policy
  can tell them apart; in AWS tokens are sealed with a key of their own, `TOKENS_KMS_KEY_ID`,
  so the API function may decrypt tokens and never envs); `LocalSealer` (one machine) uses a local
  AES-256 key. Both encrypt with AES-256-GCM and the run id (and purpose) as associated data,
  so a blob moved to another run, or sealed for another purpose, fails to open.

Blob format: `v1.local.<base64url(nonce | ciphertext+tag)>` and
`v1.kms.<base64url(len(edk) as 2 bytes | edk | nonce | ciphertext+tag)>`.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from workflow_runs.settings import Settings

MASK = "***"
_NONCE_BYTES = 12
_KEY_BYTES = 32
# What a blob is sealed for: a run's `envs`, unless a caller names another purpose.
ENVS = "envs"
APPROVAL_TOKEN = "approval-token"


# --- masking -------------------------------------------------------------------------------

# An encoded form shorter than this is not masked: it would hide ordinary text (the base64
# of a one-byte secret is one or two letters). The secret itself is masked at any length.
MIN_ENCODED_FORM_CHARS = 4


def mask(value: Any, secrets: Iterable[str]) -> Any:
    """`value` with every non-empty secret (and its escaped and encoded forms) replaced by `***`.

    Walks dicts (keys and values), lists and tuples; other scalars are returned as they are.
    Longer forms are replaced first, so a secret containing another is masked whole.
    """
    pattern = _pattern(_secret_set(secrets))
    if pattern is None:
        return value
    return _mask(value, pattern)


class StreamMasker:
    """Masks a text that arrives in chunks (a model's reasoning), as `mask` would mask the
    whole text: a secret split over chunks ("sk-", "live-", "4f9a") is still one secret.

    `feed` returns only what can no longer become part of a secret: it holds back a tail as
    long as the longest masked form minus one. `flush` returns the rest, at the step's end.
    """

    def __init__(self, secrets: Iterable[str]):
        key = _secret_set(secrets)
        self._pattern = _pattern(key)
        self._hold = max((len(form) for form in _forms(key)), default=1) - 1
        self._pending = ""

    def feed(self, text: str) -> str:
        if self._pattern is None:
            return text
        buffer = self._pending + text
        # A match that starts before `cutoff` lies wholly inside the buffer, so it is the
        # match the whole text would have there; one that starts later may still grow.
        cutoff = len(buffer) - self._hold
        out: list[str] = []
        position = 0
        for match in self._pattern.finditer(buffer):
            if match.start() >= cutoff:
                break
            out += [buffer[position:match.start()], MASK]
            position = match.end()
        safe_to = max(position, cutoff)
        out.append(buffer[position:safe_to])
        self._pending = buffer[safe_to:]
        return "".join(out)

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return rest if self._pattern is None else self._pattern.sub(MASK, rest)


def _secret_set(secrets: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({s for s in secrets if isinstance(s, str) and s}))


@lru_cache(maxsize=64)
def _forms(secrets: tuple[str, ...]) -> tuple[str, ...]:
    forms: set[str] = set()
    for secret in secrets:
        forms.add(secret)
        # How the secret reads once it went through json.dumps (quotes, backslashes,
        # control and non-ASCII characters are escaped).
        forms.add(json.dumps(secret)[1:-1])
        forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        forms.update(f for f in _encoded_forms(secret) if len(f) >= MIN_ENCODED_FORM_CHARS)
    return tuple(sorted(forms, key=lambda s: (-len(s), s)))


def _encoded_forms(secret: str) -> set[str]:
    """The secret as a URL or a base64 encoder would have written it (docs/security.md says
    what is not covered)."""
    from urllib.parse import quote, quote_plus

    forms: set[str] = set()
    for encoded in (quote(secret, safe=""), quote(secret), quote_plus(secret)):
        forms |= {encoded, re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), encoded)}
    raw = secret.encode()
    for shift in range(3):
        # Inside a longer base64 text (`Basic base64(user:secret)`) the secret's characters
        # depend on where it starts modulo 3: keep, for each start, only the characters that
        # are made of the secret's bits alone.
        encoded = base64.b64encode(b"\0" * shift + raw).decode().rstrip("=")
        core = encoded[(0, 2, 3)[shift]:(8 * (shift + len(raw))) // 6]
        forms |= {core, core.replace("+", "-").replace("/", "_")}
    for whole in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms |= {whole, whole.rstrip("=")}
    forms.discard(secret)
    return forms


@lru_cache(maxsize=64)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    forms = _forms(secrets)
    if not forms:
        return None
    return re.compile("|".join(re.escape(s) for s in forms))


def _mask(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(MASK, value)
    if isinstance(value, dict):
        return {_mask(k, pattern): _mask(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, pattern) for v in value]
    if isinstance(value, tuple):
        return tuple(_mask(v, pattern) for v in value)
    return value


# --- sealing -------------------------------------------------------------------------------


class UnsealError(Exception):
    """A sealed blob could not be opened: tampered with, another run's, or the wrong key."""


class Sealer(Protocol):
    def seal(self, envs: dict[str, str], run_id: str, *, purpose: str = ENVS) -> str: ...

    def unseal(self, blob: str, run_id: str, *, purpose: str = ENVS) -> dict[str, str]: ...


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(scheme: str, run_id: str, purpose: str = ENVS) -> bytes:
    # The scheme is bound too, so a blob cannot be replayed under another scheme's parser;
    # the purpose of anything but envs too (envs blobs keep the form they were sealed with).
    return f"v1.{scheme}|{run_id}".encode() if purpose == ENVS else f"v1.{scheme}|{run_id}|{purpose}".encode()


def encryption_context(run_id: str, purpose: str = ENVS) -> dict[str, str]:
    """The KMS encryption context of a blob: the run (CloudTrail shows which run each Decrypt
    was for) and, for anything but envs, its purpose (a key policy condition can name it)."""
    return {"runId": run_id} if purpose == ENVS else {"runId": run_id, "purpose": purpose}


def _encrypt(key: bytes, envs: dict[str, str], aad: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(_NONCE_BYTES)
    plaintext = json.dumps(envs, separators=(",", ":"), sort_keys=True).encode()
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, sealed: bytes, aad: bytes) -> dict[str, str]:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(sealed) < _NONCE_BYTES + 16:
        raise UnsealError("sealed envs are truncated")
    try:
        plaintext = AESGCM(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad)
    except InvalidTag:
        raise UnsealError("sealed envs failed authentication (tampered, another run's, or the wrong key)") from None
    return json.loads(plaintext)


def _payload(blob: str, scheme: str) -> bytes:
    prefix = f"v1.{scheme}."
    if not isinstance(blob, str) or not blob.startswith(prefix):
        found = ".".join(blob.split(".")[:2]) if isinstance(blob, str) else type(blob).__name__
        raise UnsealError(f"expected a {prefix}… blob, got {found!r}")
    try:
        return _b64decode(blob[len(prefix):])
    except ValueError:
        raise UnsealError("sealed envs are not valid base64") from None


def _check_envs(envs: dict[str, str]) -> None:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in envs.items()):
        raise TypeError("envs map strings to strings")


class LocalSealer:
    """AES-256-GCM with a local key: for one machine (`workflow-runs dev`), never for AWS."""

    scheme = "local"

    def __init__(self, key: bytes):
        if len(key) != _KEY_BYTES:
            raise ValueError(f"the local secret key must be {_KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    def seal(self, envs: dict[str, str], run_id: str, *, purpose: str = ENVS) -> str:
        _check_envs(envs)
        return f"v1.{self.scheme}." + _b64encode(_encrypt(self._key, envs, _aad(self.scheme, run_id, purpose)))

    def unseal(self, blob: str, run_id: str, *, purpose: str = ENVS) -> dict[str, str]:
        return _decrypt(self._key, _payload(blob, self.scheme), _aad(self.scheme, run_id, purpose))


class KmsSealer:
    """Envelope encryption: KMS makes one data key per seal, bound to the run by the
    encryption context (so CloudTrail shows which run each Decrypt was for); the data is
    encrypted locally with it, and only the KMS-encrypted data key is kept in the blob."""

    scheme = "kms"

    def __init__(self, key_id: str, client: Any = None, *, cache_size: int = 128,
                 key_ids: dict[str, str] | None = None):
        """`key_ids`: a KMS key of its own per purpose (the approval tokens'); `key_id` for the rest."""
        self._key_id = key_id
        self._key_ids = key_ids or {}
        self._client = client
        # Every step of a run unseals the same blob: keep a few plaintext data keys in this
        # process rather than call KMS Decrypt once per step.
        self._cache: dict[tuple[bytes, str], bytes] = {}
        self._cache_size = cache_size

    def _kms(self) -> Any:
        if self._client is None:
            from . import aws_clients

            self._client = aws_clients.make("kms")
        return self._client

    def seal(self, envs: dict[str, str], run_id: str, *, purpose: str = ENVS) -> str:
        _check_envs(envs)
        data_key = self._kms().generate_data_key(
            KeyId=self._key_ids.get(purpose, self._key_id), KeySpec="AES_256", EncryptionContext=encryption_context(run_id, purpose))
        encrypted_key: bytes = data_key["CiphertextBlob"]
        if len(encrypted_key) > 0xFFFF:
            raise ValueError("KMS returned an encrypted data key too large to frame")
        sealed = _encrypt(data_key["Plaintext"], envs, _aad(self.scheme, run_id, purpose))
        return f"v1.{self.scheme}." + _b64encode(len(encrypted_key).to_bytes(2, "big") + encrypted_key + sealed)

    def unseal(self, blob: str, run_id: str, *, purpose: str = ENVS) -> dict[str, str]:
        payload = _payload(blob, self.scheme)
        size = int.from_bytes(payload[:2], "big")
        encrypted_key, sealed = payload[2:2 + size], payload[2 + size:]
        if len(encrypted_key) != size or not size:
            raise UnsealError("sealed envs are truncated")
        return _decrypt(self._data_key(encrypted_key, run_id, purpose), sealed, _aad(self.scheme, run_id, purpose))

    def _data_key(self, encrypted_key: bytes, run_id: str, purpose: str) -> bytes:
        cached = self._cache.get((encrypted_key, run_id))
        if cached is not None:
            return cached
        from botocore.exceptions import ClientError

        try:
            plaintext = self._kms().decrypt(
                CiphertextBlob=encrypted_key, KeyId=self._key_ids.get(purpose, self._key_id),
                EncryptionContext=encryption_context(run_id, purpose))["Plaintext"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise UnsealError(f"KMS refused the data key ({code}): another run's blob or another key") from None
            raise
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[(encrypted_key, run_id)] = plaintext
        return plaintext


def generate_local_key() -> str:
    """A fresh base64 AES-256 key for LOCAL_SECRET_KEY."""
    return base64.b64encode(os.urandom(_KEY_BYTES)).decode()


@lru_cache(maxsize=4)
def get_sealer(settings: Settings) -> Sealer:
    """KMS when ENVS_KMS_KEY_ID is set, else the local key; neither is a configuration error."""
    if settings.envs_kms_key_id:
        tokens = {APPROVAL_TOKEN: settings.tokens_kms_key_id} if settings.tokens_kms_key_id else {}
        return KmsSealer(settings.envs_kms_key_id, key_ids=tokens)
    if settings.local_secret_key:
        return LocalSealer(local_key(settings.local_secret_key))
    raise RuntimeError("no way to seal envs: set ENVS_KMS_KEY_ID (AWS) or LOCAL_SECRET_KEY (one machine)")


def local_key(encoded: str) -> bytes:
    """The 32 bytes of a base64 LOCAL_SECRET_KEY, or a RuntimeError naming what is wrong."""
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise RuntimeError("LOCAL_SECRET_KEY is not valid base64") from None
    if len(key) != _KEY_BYTES:
        raise RuntimeError(f"LOCAL_SECRET_KEY must decode to {_KEY_BYTES} bytes, got {len(key)}")
    return key
