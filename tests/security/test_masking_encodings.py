"""Threat: a secret echoed back percent-encoded or base64-encoded (a URL built from it, a
`Basic` header an echo server reflects) slips past masking that only knows the raw value."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import pytest
from workflow_runs.secrets import StreamMasker, mask

SECRET = "p@ss/wörd+42"


@pytest.mark.parametrize("encoded", [
    quote(SECRET, safe=""),
    quote(SECRET),
    quote_plus(SECRET),
    quote(SECRET, safe="").lower(),
    base64.b64encode(SECRET.encode()).decode(),
    base64.urlsafe_b64encode(SECRET.encode()).decode(),
    base64.b64encode(SECRET.encode()).decode().rstrip("="),
], ids=["quote-all", "quote-path", "quote-plus", "lower-hex", "base64", "base64url", "base64-unpadded"])
def test_an_encoded_secret_is_masked(encoded: str):
    assert SECRET not in encoded  # the encoded form really differs from the value
    assert mask({"echo": f"got {encoded}!"}, [SECRET]) == {"echo": "got ***!"}


@pytest.mark.parametrize("prefix", ["u:", "us:", "use:"])  # the three alignments inside base64
def test_a_secret_inside_a_longer_base64_text_is_masked_at_any_alignment(prefix: str):
    basic = base64.b64encode(f"{prefix}{SECRET}".encode()).decode()
    masked = mask(f"Authorization: Basic {basic}", [SECRET])
    assert "***" in masked
    # What is left cannot give the secret back: at most the few characters that mix the
    # prefix's or the padding's bits with the secret's.
    left = masked.removeprefix("Authorization: Basic ").replace("***", "")
    assert len(left) <= 8


def test_encoded_forms_are_masked_across_chunk_boundaries_too():
    encoded = base64.b64encode(SECRET.encode()).decode()
    masker = StreamMasker([SECRET])
    streamed = "".join(masker.feed(c) for c in ("token ", encoded[:5], encoded[5:], " end")) + masker.flush()
    assert streamed == "token *** end"


def test_very_short_encoded_forms_are_not_masked_so_ordinary_text_survives():
    # The base64 of "a" starts "YQ": masking every "YQ" would mangle unrelated text.
    assert mask("YQ", ["a"]) == "YQ"
