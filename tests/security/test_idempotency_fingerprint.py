"""Threat: the idempotency claim as an oracle on `envs`. Its fingerprint was a plain SHA-256
of the body, `envs` included: a short secret came back offline from the stored hash, and a
caller reusing someone's key learned by 409-or-not whether its guessed `envs` were right."""

from __future__ import annotations

import base64
import hashlib
import json

import boto3
import pytest
from moto import mock_aws
from workflow_runs import keys
from workflow_runs.fingerprint import LABEL, Fingerprinter, get_fingerprinter
from workflow_runs.serverkey import kms_derived_key, local_derived_key

from tests.api.conftest import Api
from tests.support import LOCAL_KEY

RUNS = "/api/v1/workflow-runs"
PIN = "4711"


def _claim(api: Api, tenant: str, key: str) -> dict:
    item = api.store.client.get_item(
        TableName=api.store.settings.runs_table,
        Key={keys.PK: {"S": keys.idempotency_pk(tenant, key)}, keys.SK: {"S": keys.IDEMPOTENCY_SK}})["Item"]
    return {name: value["S"] for name, value in item.items() if "S" in value}


def test_the_stored_fingerprint_is_keyed_so_a_short_secret_is_not_found_offline(api: Api):
    # Given an idempotent execute carrying a four-digit secret
    body = {"workflowId": api.put_workflow(), "inputs": {"topic": "x"}, "envs": {"PIN": PIN}}
    response = api.client.post(f"{RUNS}/execute", json=body, headers={**api.headers(), "Idempotency-Key": "k-1"})
    assert response.status_code in (200, 202)

    # When someone who reads the claim item tries every PIN against it, as a plain hash allows
    stored = _claim(api, "t1", "k-1")["requestHash"]
    found = [pin for pin in (f"{n:04d}" for n in range(10_000))
             if hashlib.sha256(json.dumps({**body, "envs": {"PIN": pin}}, sort_keys=True,
                                          separators=(",", ":")).encode()).hexdigest() == stored]

    # Then nothing matches: the fingerprint is an HMAC under the server's key, not a hash
    assert found == []
    assert PIN not in stored
    expected = Fingerprinter(local_derived_key(base64.b64decode(LOCAL_KEY), LABEL))("dev-user", body)
    assert stored == expected and stored.startswith("v1.")


def test_another_caller_reusing_a_key_gets_409_whatever_envs_it_guesses(api: Api):
    workflow_id = api.put_workflow()
    body = {"workflowId": workflow_id, "inputs": {"topic": "x"}, "envs": {"PIN": PIN}}
    owner = {**api.headers(), "Idempotency-Key": "k-2"}
    first = api.client.post(f"{RUNS}/execute", json=body, headers=owner)
    assert first.status_code in (200, 202)

    # A second user of the same tenant, who learned the key, probes the PIN
    stranger = {"Authorization": f"Bearer {api.identity.token(tenant='t1', subject='someone-else')}",
                "Idempotency-Key": "k-2"}
    right = api.client.post(f"{RUNS}/execute", json=body, headers=stranger)
    wrong = api.client.post(f"{RUNS}/execute", json={**body, "envs": {"PIN": "0000"}}, headers=stranger)

    # Both answers are the same 409: the reply says nothing about the PIN
    assert (right.status_code, wrong.status_code) == (409, 409)
    assert right.json() == wrong.json()
    # The owner's own repeat still gets its first run back
    again = api.client.post(f"{RUNS}/execute", json=body, headers=owner)
    assert again.json()["workflowRun"]["id"] == first.json()["workflowRun"]["id"]


def test_fingerprints_differ_by_key_caller_and_request_and_are_stable_for_each():
    a, b = Fingerprinter(b"a" * 32), Fingerprinter(b"b" * 32)
    request = {"workflowId": "w", "envs": {"PIN": PIN}}
    assert a("u", request) == a("u", dict(reversed(list(request.items()))))  # key order does not matter
    assert len({a("u", request), b("u", request), a("v", request), a("u", {**request, "envs": {}})}) == 4


def test_in_aws_the_key_is_derived_once_from_a_kms_hmac_key_that_never_leaves_kms():
    with mock_aws():
        kms = boto3.client("kms", region_name="eu-west-1")
        key_id = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
        derived = kms_derived_key(key_id, LABEL, kms)
        assert derived == kms.generate_mac(KeyId=key_id, MacAlgorithm="HMAC_SHA_256", Message=LABEL)["Mac"]
        assert len(derived) == 32 and derived == kms_derived_key(key_id, LABEL, kms)


def test_without_a_kms_key_or_a_local_key_fingerprinting_fails_loudly():
    from workflow_runs.settings import Settings

    with pytest.raises(RuntimeError, match="FINGERPRINT_KMS_KEY_ID"):
        get_fingerprinter(Settings(runs_table="r", events_table="e"))
    local = get_fingerprinter(Settings(runs_table="r", events_table="e", local_secret_key=LOCAL_KEY))
    assert local("u", {}) == Fingerprinter(local_derived_key(base64.b64decode(LOCAL_KEY), LABEL))("u", {})
