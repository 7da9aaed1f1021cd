"""JwtVerifier against a real JWKS server on loopback; the internal principal; the dev identity."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from workflow_runs.auth import JwtVerifier, Principal, get_verifier, internal_principal
from workflow_runs.devkeys import DEV_AUDIENCE, DEV_ISSUER, DevIdentity
from workflow_runs.errors import Unauthorized, ValidationFailed

from tests.auth_fixtures import (
    ATTACKS,
    MAX_KEY_AGE,
    REFETCH_INTERVAL,
    TENANT_CLAIM,
    FakeClock,
    JwksServer,
    SigningKey,
    Tokens,
    auth_settings,
)


def test_valid_token_yields_subject_and_tenant(verifier: JwtVerifier, tokens: Tokens) -> None:
    assert verifier.verify(tokens.valid()) == Principal(subject="user-1", tenant="acme", internal=False)


def test_es256_key_from_the_jwks_is_accepted(
    jwks_server: JwksServer, signing_key: SigningKey, clock: FakeClock
) -> None:
    # Given an issuer publishing an RSA and an EC key
    ec_key = SigningKey.ec("ec-1")
    jwks_server.publish(signing_key, ec_key)
    verifier = JwtVerifier(auth_settings(jwks_server.url), clock=clock)
    # Then a token signed with the EC key verifies
    token = Tokens(ec_key).valid(**{TENANT_CLAIM: "globex"})
    assert verifier.verify(token).tenant == "globex"


def test_expiry_within_leeway_is_accepted(verifier: JwtVerifier, tokens: Tokens) -> None:
    token = tokens.valid(exp=int(time.time()) - 5)  # the default leeway is 30 s
    assert verifier.verify(token).tenant == "acme"


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_rejected_as_unauthorized(attack: str, verifier: JwtVerifier, tokens: Tokens) -> None:
    build, reason = ATTACKS[attack]
    token = build(tokens)
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(token)
    message = str(caught.value.details)
    assert reason in message
    # The message is short and never echoes the token (or a part of it).
    assert len(message) < 80
    for part in token.split("."):
        if len(part) >= 8:
            assert part not in message


def test_new_kid_published_while_live_is_accepted_without_restart(
    verifier: JwtVerifier, jwks_server: JwksServer, signing_key: SigningKey, clock: FakeClock
) -> None:
    # Given a live verifier that has fetched the JWKS once
    assert verifier.verify(Tokens(signing_key).valid()).tenant == "acme"
    assert jwks_server.requests == 1
    # When the issuer rotates in a new key and signs with it
    rotated = SigningKey.rsa("rotated-2")
    jwks_server.publish(signing_key, rotated)
    clock.advance(REFETCH_INTERVAL)
    # Then the same verifier accepts it after one refetch, and the old key still works
    assert verifier.verify(Tokens(rotated).valid(**{TENANT_CLAIM: "globex"})).tenant == "globex"
    assert verifier.verify(Tokens(signing_key).valid()).tenant == "acme"
    assert jwks_server.requests == 2


def test_burst_of_unknown_kids_causes_at_most_one_fetch_per_window(
    verifier: JwtVerifier, jwks_server: JwksServer, tokens: Tokens, clock: FakeClock
) -> None:
    # Given a warm verifier and a window that has passed since its fetch
    verifier.verify(tokens.valid())
    clock.advance(REFETCH_INTERVAL)
    # When a flood of tokens with made-up kids arrives
    for n in range(50):
        with pytest.raises(Unauthorized):
            verifier.verify(tokens.sign(tokens.claims(), tokens.stranger, kid=f"bogus-{n}"))
    # Then the JWKS endpoint saw one refetch, not fifty
    assert jwks_server.requests == 2


def test_concurrent_flood_of_unknown_kids_causes_one_fetch(
    verifier: JwtVerifier, jwks_server: JwksServer, tokens: Tokens, clock: FakeClock
) -> None:
    verifier.verify(tokens.valid())
    clock.advance(REFETCH_INTERVAL)
    forged = [tokens.sign(tokens.claims(), tokens.stranger, kid=f"bogus-{n}") for n in range(40)]

    def attempt(token: str) -> bool:
        try:
            verifier.verify(token)
        except Unauthorized:
            return False
        return True

    with ThreadPoolExecutor(max_workers=16) as pool:
        accepted = list(pool.map(attempt, forged))
    assert not any(accepted)
    assert jwks_server.requests == 2


def test_rotated_key_waits_for_the_window_then_is_accepted(
    verifier: JwtVerifier, jwks_server: JwksServer, signing_key: SigningKey, clock: FakeClock
) -> None:
    # Given a fetch just happened (the window is closed)
    verifier.verify(Tokens(signing_key).valid())
    rotated = SigningKey.rsa("rotated-3")
    jwks_server.publish(signing_key, rotated)
    # Then the new kid is refused without touching the endpoint while the window is closed
    with pytest.raises(Unauthorized):
        verifier.verify(Tokens(rotated).valid())
    assert jwks_server.requests == 1
    # And accepted once it opens
    clock.advance(REFETCH_INTERVAL)
    assert verifier.verify(Tokens(rotated).valid()).tenant == "acme"
    assert jwks_server.requests == 2


def test_known_key_is_served_from_cache_without_fetching(
    verifier: JwtVerifier, jwks_server: JwksServer, tokens: Tokens, clock: FakeClock
) -> None:
    for _ in range(20):
        verifier.verify(tokens.valid())
        clock.advance(1)
    assert jwks_server.requests == 1


def test_key_removed_from_jwks_stops_verifying_after_max_age(
    verifier: JwtVerifier, jwks_server: JwksServer, signing_key: SigningKey, clock: FakeClock
) -> None:
    # Given a key the issuer has withdrawn (e.g. compromised)
    verifier.verify(Tokens(signing_key).valid())
    replacement = SigningKey.rsa("replacement")
    jwks_server.publish(replacement)
    # When the cached set has aged out
    clock.advance(MAX_KEY_AGE)
    # Then tokens signed with the withdrawn key are refused
    with pytest.raises(Unauthorized):
        verifier.verify(Tokens(signing_key).valid())
    assert jwks_server.requests == 2


def test_jwks_outage_keeps_last_good_keys(
    verifier: JwtVerifier, jwks_server: JwksServer, tokens: Tokens, clock: FakeClock
) -> None:
    verifier.verify(tokens.valid())
    jwks_server.failing = True
    clock.advance(MAX_KEY_AGE + 1)
    # The refresh fails, yet the cached key still verifies
    assert verifier.verify(tokens.valid()).tenant == "acme"
    assert jwks_server.requests == 2


def test_jwks_unreachable_at_start_is_unauthorized_and_rate_limited(
    jwks_server: JwksServer, tokens: Tokens, clock: FakeClock
) -> None:
    jwks_server.failing = True
    verifier = JwtVerifier(auth_settings(jwks_server.url), clock=clock)
    for _ in range(5):
        with pytest.raises(Unauthorized):
            verifier.verify(tokens.valid())
    assert jwks_server.requests == 1


def test_symmetric_algorithm_in_settings_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match="asymmetric"):
        JwtVerifier(auth_settings("http://127.0.0.1:9/jwks", jwt_algorithms=("RS256", "HS256")))


@pytest.mark.parametrize("missing", ["jwks_url", "jwt_issuer", "jwt_audience"])
def test_missing_verification_setting_fails_loudly(missing: str) -> None:
    settings = auth_settings("http://127.0.0.1:9/jwks").model_copy(update={missing: None})
    with pytest.raises(RuntimeError):
        JwtVerifier(settings)


def test_get_verifier_returns_one_verifier_per_settings() -> None:
    settings = auth_settings("http://127.0.0.1:9/jwks")
    assert get_verifier(settings) is get_verifier(settings)
    assert get_verifier(settings) is not get_verifier(auth_settings("http://127.0.0.1:9/other"))


def test_internal_principal_acts_for_the_named_tenant() -> None:
    assert internal_principal("acme.prod:eu-1_a") == Principal(
        subject="internal", tenant="acme.prod:eu-1_a", internal=True
    )
    assert internal_principal("t" * 128).tenant == "t" * 128


@pytest.mark.parametrize("header", [None, "", "   ", "acme#WF#x", "t" * 129, "acme\n", "ac me", "ténant", "a/b"])
def test_internal_principal_rejects_missing_or_invalid_tenant(header: str | None) -> None:
    with pytest.raises(ValidationFailed):
        internal_principal(header)


def test_dev_identity_token_verifies_against_its_served_jwks(jwks_server: JwksServer) -> None:
    # Given the dev identity's JWKS served over HTTP, as the dev server does
    dev = DevIdentity.generate()
    jwks_server.serve(dev.jwks)
    verifier = JwtVerifier(dev.settings_for(auth_settings(None), jwks_url=jwks_server.url))
    # Then its default token is a dev-user of tenant dev
    assert verifier.verify(dev.token()) == Principal(subject="dev-user", tenant="dev", internal=False)


def test_dev_identity_verifier_needs_no_network() -> None:
    dev = DevIdentity.generate()
    verifier = dev.verifier(auth_settings(None))
    assert verifier.verify(dev.token(tenant="team-a", subject="me")).tenant == "team-a"
    # Another dev identity's token (another key, another kid) is refused
    with pytest.raises(Unauthorized):
        verifier.verify(DevIdentity.generate().token())


def test_dev_identity_token_is_long_lived_and_names_the_dev_issuer() -> None:
    dev = DevIdentity.generate()
    claims = jwt.decode(dev.token(), options={"verify_signature": False})
    assert claims["iss"] == DEV_ISSUER and claims["aud"] == DEV_AUDIENCE
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600
    assert jwt.get_unverified_header(dev.token())["kid"] == dev.kid


def test_dev_identity_jwks_publishes_only_the_public_key() -> None:
    (jwk,) = DevIdentity.generate().jwks["keys"]
    assert jwk["kty"] == "RSA" and jwk["alg"] == "RS256" and jwk["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
