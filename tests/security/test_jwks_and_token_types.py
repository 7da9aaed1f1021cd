"""Threats in token verification: a token with an unknown `kid` held the key lock while the
key set was fetched, stalling every valid request for seconds; and ID tokens (or any typed
JWT) with the right audience, or time claims written as strings, passed."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from workflow_runs.auth import JwtVerifier
from workflow_runs.errors import Unauthorized

from tests.auth_fixtures import REFETCH_INTERVAL, FakeClock, JwksServer, SigningKey, Tokens, auth_settings

FETCH_SECONDS = 2.0


class SlowKeySource:
    """The issuer's JWKS, fetched through PyJWT, taking FETCH_SECONDS once `slow` is set."""

    def __init__(self, url: str):
        from jwt import PyJWKClient

        self._client = PyJWKClient(url, cache_jwk_set=False, cache_keys=False)
        self.slow = False
        self.fetches = 0

    def get_signing_keys(self, refresh: bool = False) -> list[Any]:
        self.fetches += 1
        if self.slow:
            time.sleep(FETCH_SECONDS)
        return self._client.get_signing_keys(refresh=refresh)


@pytest.fixture
def slow_source(jwks_server: JwksServer, signing_key: SigningKey) -> SlowKeySource:
    jwks_server.publish(signing_key)
    return SlowKeySource(jwks_server.url)


def test_a_valid_token_is_not_held_up_while_an_unknown_kid_fetches_the_key_set(
        slow_source: SlowKeySource, tokens: Tokens, clock: FakeClock):
    # Given a verifier with the issuer's key cached, and a refetch allowed again
    verifier = JwtVerifier(auth_settings("unused"), slow_source, clock=clock)
    verifier.verify(tokens.valid())
    clock.advance(REFETCH_INTERVAL + 1)
    slow_source.slow = True

    # When a token with a made-up kid starts a (slow) fetch
    stranger = threading.Thread(target=_refused, args=(verifier, tokens.sign(tokens.claims(), kid="made-up")))
    stranger.start()
    time.sleep(0.2)  # the fetch is in flight

    # Then a valid token is verified at once, from the cached keys
    started = time.monotonic()
    assert verifier.verify(tokens.valid()).subject == "user-1"
    assert time.monotonic() - started < 0.5
    stranger.join()
    assert slow_source.fetches == 2


def test_tokens_waiting_for_a_new_key_share_the_one_fetch_in_flight(
        jwks_server: JwksServer, slow_source: SlowKeySource, tokens: Tokens, clock: FakeClock):
    verifier = JwtVerifier(auth_settings("unused"), slow_source, clock=clock)
    verifier.verify(tokens.valid())
    rotated = SigningKey.rsa("issuer-key-2")
    jwks_server.publish(tokens.key, rotated)
    clock.advance(REFETCH_INTERVAL + 1)
    slow_source.slow = True

    results: list[str] = []
    new_token = tokens.sign(tokens.claims(), rotated)
    threads = [threading.Thread(target=lambda: results.append(verifier.verify(new_token).subject)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == ["user-1"] * 5
    assert slow_source.fetches == 2  # the first at start, one for the new key


def _refused(verifier: JwtVerifier, token: str) -> None:
    with pytest.raises(Unauthorized):
        verifier.verify(token)


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt"])
def test_access_tokens_with_or_without_a_type_pass(slow_source: SlowKeySource, tokens: Tokens, typ: str | None):
    verifier = JwtVerifier(auth_settings("unused"), slow_source)
    assert verifier.verify(tokens.sign(tokens.claims(), typ=typ)).tenant == "acme"


def test_fractional_time_claims_are_numbers_too(slow_source: SlowKeySource, tokens: Tokens):
    now = time.time()
    verifier = JwtVerifier(auth_settings("unused"), slow_source)
    assert verifier.verify(tokens.valid(iat=now - 1.5, nbf=now - 1.5, exp=now + 60.5)).subject == "user-1"
