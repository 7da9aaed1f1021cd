"""Secrets of a run: masking everywhere, sealing at rest (local AES-GCM key and KMS envelope)."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from moto import mock_aws
from workflow_runs.secrets import (
    KmsSealer,
    LocalSealer,
    UnsealError,
    generate_local_key,
    get_sealer,
    mask,
)
from workflow_runs.settings import Settings

RUN = "11111111-1111-4111-8111-111111111111"
OTHER_RUN = "22222222-2222-4222-8222-222222222222"
ENVS = {"API_TOKEN": "tok-123", "DB_PASSWORD": 'p"a\\ss/é'}


# --- mask ---------------------------------------------------------------------------------------


def test_mask_replaces_secrets_in_nested_structures_keys_included():
    value = {"body": {"list": ["Bearer tok-123", 7, None, ("tok-123",)]}, "tok-123": "key too", "n": 123}
    assert mask(value, ["tok-123"]) == {
        "body": {"list": ["Bearer ***", 7, None, ("***",)]}, "***": "key too", "n": 123}


def test_mask_replaces_every_occurrence():
    assert mask("tok-123 and tok-123again", ["tok-123"]) == "*** and ***again"


def test_mask_replaces_longest_secrets_first():
    # With "abc" first, "abcdef" would leave "***def" behind.
    assert mask("x abcdef y abc", ["abc", "abcdef"]) == "x *** y ***"


def test_mask_covers_json_escaped_forms():
    secret = ENVS["DB_PASSWORD"]
    as_json = json.dumps({"password": secret})
    assert secret not in as_json  # the escaped form really differs from the raw value
    masked = mask(as_json, ENVS.values())
    assert masked == '{"password": "***"}'
    assert mask(json.dumps({"p": secret}, ensure_ascii=False), [secret]) == '{"p": "***"}'


def test_mask_ignores_empty_secrets_and_leaves_other_text():
    assert mask({"a": "plain"}, ["", "tok-123"]) == {"a": "plain"}
    assert mask("plain", []) == "plain"


def test_mask_does_not_treat_secrets_as_regular_expressions():
    assert mask("a.c abc", ["a.c"]) == "*** abc"


# --- LocalSealer ---------------------------------------------------------------------------------


@pytest.fixture
def local() -> LocalSealer:
    return LocalSealer(b"k" * 32)


def test_local_round_trip(local):
    blob = local.seal(ENVS, RUN)
    assert blob.startswith("v1.local.")
    assert local.unseal(blob, RUN) == ENVS


def test_local_blob_hides_the_values(local):
    blob = local.seal(ENVS, RUN)
    payload = base64.urlsafe_b64decode(blob.split(".", 2)[2] + "==")
    assert b"tok-123" not in payload and "tok-123" not in blob


def test_local_seal_is_randomised(local):
    assert local.seal(ENVS, RUN) != local.seal(ENVS, RUN)


def test_local_tampering_is_detected(local):
    blob = local.seal(ENVS, RUN)
    payload = bytearray(base64.urlsafe_b64decode(blob.split(".", 2)[2] + "=="))
    payload[-1] ^= 0x01
    tampered = "v1.local." + base64.urlsafe_b64encode(bytes(payload)).decode().rstrip("=")
    with pytest.raises(UnsealError, match="failed authentication"):
        local.unseal(tampered, RUN)


def test_local_blob_of_another_run_fails(local):
    with pytest.raises(UnsealError):
        local.unseal(local.seal(ENVS, RUN), OTHER_RUN)


def test_local_blob_under_another_key_fails(local):
    with pytest.raises(UnsealError):
        LocalSealer(b"j" * 32).unseal(local.seal(ENVS, RUN), RUN)


@pytest.mark.parametrize("blob", ["", "v1.kms.AAAA", "v2.local.AAAA", "v1.local.AAAA", "v1.local.%%%"])
def test_local_refuses_malformed_blobs(local, blob):
    with pytest.raises(UnsealError):
        local.unseal(blob, RUN)


def test_local_key_must_be_32_bytes():
    with pytest.raises(ValueError):
        LocalSealer(b"short")


# --- KmsSealer under moto ---------------------------------------------------------------------------


@pytest.fixture
def kms():
    with mock_aws():
        client = boto3.client("kms", region_name="eu-west-1")
        key_id = client.create_key(Description="envs")["KeyMetadata"]["KeyId"]
        yield client, key_id


def test_kms_round_trip(kms):
    client, key_id = kms
    sealer = KmsSealer(key_id, client=client)
    blob = sealer.seal(ENVS, RUN)
    assert blob.startswith("v1.kms.") and "tok-123" not in blob
    assert KmsSealer(key_id, client=client).unseal(blob, RUN) == ENVS  # a fresh sealer: no cached key


def test_kms_blob_of_another_run_fails(kms):
    client, key_id = kms
    blob = KmsSealer(key_id, client=client).seal(ENVS, RUN)
    with pytest.raises(UnsealError):
        KmsSealer(key_id, client=client).unseal(blob, OTHER_RUN)


def test_kms_tampered_ciphertext_fails(kms):
    client, key_id = kms
    sealer = KmsSealer(key_id, client=client)
    blob = sealer.seal(ENVS, RUN)
    payload = bytearray(base64.urlsafe_b64decode(blob.split(".", 2)[2] + "=="))
    payload[-1] ^= 0x01
    with pytest.raises(UnsealError):
        sealer.unseal("v1.kms." + base64.urlsafe_b64encode(bytes(payload)).decode().rstrip("="), RUN)


def test_kms_unseal_reuses_the_data_key_for_the_same_blob(kms):
    client, key_id = kms
    calls: list[str] = []
    client.meta.events.register("before-call.kms.Decrypt", lambda **kw: calls.append("decrypt"))
    sealer = KmsSealer(key_id, client=client)
    blob = sealer.seal(ENVS, RUN)
    assert sealer.unseal(blob, RUN) == sealer.unseal(blob, RUN) == ENVS
    assert calls == ["decrypt"]


# --- choosing a sealer ------------------------------------------------------------------------------


def settings(**values) -> Settings:
    return Settings(runs_table="runs", events_table="events", **values)


def test_get_sealer_prefers_kms_when_a_key_id_is_set():
    assert isinstance(get_sealer(settings(envs_kms_key_id="alias/envs", local_secret_key=generate_local_key())),
                      KmsSealer)


def test_get_sealer_uses_the_local_key_otherwise():
    key = generate_local_key()
    sealer = get_sealer(settings(local_secret_key=key))
    assert isinstance(sealer, LocalSealer)
    assert LocalSealer(base64.b64decode(key)).unseal(sealer.seal(ENVS, RUN), RUN) == ENVS


def test_get_sealer_without_any_key_fails_loudly():
    with pytest.raises(RuntimeError, match="ENVS_KMS_KEY_ID"):
        get_sealer(settings())


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"short").decode()])
def test_get_sealer_refuses_a_bad_local_key(bad):
    with pytest.raises(RuntimeError, match="LOCAL_SECRET_KEY"):
        get_sealer(settings(local_secret_key=bad))
