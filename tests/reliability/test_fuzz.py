"""Fuzzing the running dev server (LocalRuntime, loopback) from its OpenAPI document.

1. schemathesis generates requests for every operation of `docs/openapi.json` — valid ones
   and invalid ones (negative mode) — sent with a valid bearer token; a share of them is
   aimed at ids that exist (a workflow made for the fuzzer, its runs), so the deep paths run
   too. Each response must not be a 5xx, must conform to the documented schema for its
   status and content type, and every 4xx must be the uniform error body. At least 1,000
   requests with SOAK=1; a few hundred in `make test`, bounded in time either way.
2. A corpus of malformed multipart bodies and oversized fields for both execute endpoints:
   each one is a 4xx with the uniform error body, never a 5xx.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from workflow_runs.models import WorkflowDefinition
from workflow_runs.service import ExecuteRequest

from tests.reliability.support import soak

pytestmark = pytest.mark.dynamodb_local

ROOT = Path(__file__).resolve().parents[2]
RUNS = "/api/v1/workflow-runs"
GENERATED = soak(200, 1500)  # requests the generator makes (the minimum is checked below)
TIME_BUDGET_SECONDS = soak(60, 600)
FUZZ_WORKFLOW = {
    "name": "Fuzzed",
    "inputs": [{"name": "topic", "type": "string", "required": False, "default": "tides"},
               {"name": "count", "type": "integer", "required": False}],
    "steps": [{"id": "only", "type": "transform", "config": {"output": "{{ inputs.topic }}"}}],
}


def uniform_error_problems(response: Any) -> list[str]:
    """What is wrong with a 4xx body, measured against the contract's uniform error."""
    try:
        body = response.json()
    except ValueError:
        return [f"{response.status_code} is not JSON: {response.text[:120]!r}"]
    problems = []
    if not (isinstance(body, dict) and set(body) == {"success", "error", "details"}):
        problems.append(f"{response.status_code} keys {sorted(body) if isinstance(body, dict) else type(body)}")
    elif body["success"] is not False or not isinstance(body["error"], str) or not isinstance(body["details"], (str, list)):
        problems.append(f"{response.status_code} body {str(body)[:160]}")
    if "traceback" in response.text.lower():
        problems.append(f"{response.status_code} carries a stack trace")
    return problems


@pytest.fixture(scope="module")
def fuzz_targets(dev_runtime: Any) -> dict[str, Any]:
    """A workflow for the fuzzer (so its PUTs replace nothing another suite uses) and runs of it."""
    workflow_id = str(uuid.uuid4())
    dev_runtime.service.put_workflow("dev", workflow_id, WorkflowDefinition.model_validate(FUZZ_WORKFLOW))
    run_ids = [dev_runtime.service.start_run("dev", ExecuteRequest(workflow_id=workflow_id)).id for _ in range(5)]
    return {"workflow_id": workflow_id, "run_ids": run_ids}


@pytest.mark.timeout(TIME_BUDGET_SECONDS + 120)
def test_generated_requests_get_no_5xx_and_only_schema_conformant_replies(dev_runtime: Any, fuzz_targets: dict):
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

    schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    strategy = st.one_of([op.as_strategy(mode) for op in operations
                          for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)])
    auth = {"Authorization": f"Bearer {dev_runtime.token}"}
    rng = random.Random(9)
    session = requests.Session()
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    seen: dict[str, int] = {}
    failures: list[str] = []

    def aim(case: Any) -> None:
        # Random UUIDs only ever reach the 404 path: aim some cases at ids that exist.
        path = case.path_parameters or {}
        if "runId" in path and rng.random() < 0.4:
            path["runId"] = rng.choice(fuzz_targets["run_ids"])
        if "workflowId" in path and rng.random() < 0.5:
            path["workflowId"] = fuzz_targets["workflow_id"]
        if isinstance(case.body, dict) and "workflowId" in case.body and rng.random() < 0.5:
            case.body["workflowId"] = fuzz_targets["workflow_id"]

    @settings(max_examples=GENERATED, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=True)
    @given(case=strategy)
    def send(case: Any) -> None:
        if time.monotonic() > deadline:
            return
        aim(case)
        label = f"{case.method} {case.operation.path}"
        try:
            response = case.call(base_url=dev_runtime.public_url, session=session, headers=auth, timeout=30)
        except Exception as exc:  # noqa: BLE001 - a transport error is a finding, recorded like any other
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
            return
        key = f"{label} → {response.status_code}"
        seen[key] = seen.get(key, 0) + 1
        try:
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                                     content_type_conformance])
        except Exception as exc:  # noqa: BLE001 - schemathesis raises a group of check failures
            failures.append(f"{key}: {str(exc).strip().splitlines()[0][:300]}")
        if 400 <= response.status_code < 500:
            failures.extend(f"{key}: {problem}" for problem in uniform_error_problems(response))

    send()
    sent = sum(seen.values())
    print(f"\nfuzzing: {sent} requests; replies: {json.dumps(dict(sorted(seen.items())), indent=1)}")
    assert failures == [], "\n".join(failures[:30])
    assert sent >= soak(100, 1000), f"only {sent} requests in the time budget"
    assert any(k.endswith("→ 200") for k in seen) and any(" → 4" in k for k in seen)  # both kinds reached


# ------------------------------------------------------------------ malformed bodies


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"fuzzBOUNDARY", close: bool = True) -> bytes:
    """A multipart body from (part headers, content) pairs."""
    out = b""
    for headers, content in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
    return out + (b"--" + boundary + b"--\r\n" if close else b"")


def field(name: bytes, value: bytes, extra: bytes = b"") -> tuple[bytes, bytes]:
    return b'Content-Disposition: form-data; name="' + name + b'"' + extra, value


def malformed_corpus(workflow_id: str) -> dict[str, tuple[dict[str, str], bytes, tuple[int, ...]]]:
    """name → (headers, body, acceptable statuses)."""
    wf = workflow_id.encode()
    form = {"Content-Type": "multipart/form-data; boundary=fuzzBOUNDARY"}
    valid_parts = [field(b"workflowId", wf), field(b"inputs", b'{"topic": "x"}')]
    big = 300 * 1024  # over the 256 KiB body limit
    as_json = {"Content-Type": "application/json"}

    def json_with_topic(value: bytes) -> bytes:
        return b'{"workflowId": "' + wf + b'", "inputs": {"topic": ' + value + b"}}"
    return {
        "boundary in the header differs from the body's": (
            {"Content-Type": "multipart/form-data; boundary=other"}, multipart(valid_parts), (400,)),
        "no boundary parameter": ({"Content-Type": "multipart/form-data"}, multipart(valid_parts), (400,)),
        "body cut inside a part": (form, multipart(valid_parts)[:60], (400,)),
        "garbage, not multipart at all": (form, b"\x00\xff" * 512, (400,)),
        "empty body": (form, b"", (400,)),
        "huge field name": (form, multipart([field(b"n" * 100_000, b"x"), *valid_parts]), (400, 413)),
        "10,000 fields": (form, multipart([field(b"f%d" % i, b"x") for i in range(10_000)]), (400, 413)),
        "a field over the body limit": (form, multipart([field(b"workflowId", wf), field(b"inputs", b"x" * big)]),
                                        (413,)),
        "non-UTF-8 bytes in a value": (form, multipart([field(b"workflowId", wf), field(b"inputs", b"\xff\xfe\x80")]),
                                       (400,)),
        "non-UTF-8 bytes in a name": (form, multipart([field(b"\xff\xfeid", wf), *valid_parts]), (400,)),
        "duplicated fields": (form, multipart([*valid_parts, field(b"workflowId", wf)]), (400,)),
        "a file instead of a field": (form, multipart(
            [field(b"workflowId", wf, b'; filename="id.txt"\r\nContent-Type: text/plain'), field(b"inputs", b"{}")]),
            (400,)),
        "inputs that are not JSON": (form, multipart([field(b"workflowId", wf), field(b"inputs", b"{topic: x")]),
                                     (400,)),
        "envs that are not an object of strings": (
            form, multipart([field(b"workflowId", wf), field(b"envs", b'{"K": 1}')]), (400,)),
        "an env value over its limit": (
            form, multipart([field(b"workflowId", wf), field(b"envs", json.dumps({"K": "v" * 5000}).encode())]), (400,)),
        "too many envs": (form, multipart([field(b"workflowId", wf), field(
            b"envs", json.dumps({f"K{i}": "v" for i in range(60)}).encode())]), (400,)),
        "a workflowId of 10,000 characters": (form, multipart([field(b"workflowId", b"7" * 10_000)]), (400,)),
        "an unknown workflow": (form, multipart([field(b"workflowId", str(uuid.uuid4()).encode())]), (404,)),
        "JSON over the body limit": ({"Content-Type": "application/json"},
                                     json.dumps({"workflowId": workflow_id, "inputs": {"topic": "x" * big}}).encode(),
                                     (413,)),
        "JSON that is not an object": ({"Content-Type": "application/json"}, b"[1, 2, 3]", (400,)),
        "JSON with an unknown field": ({"Content-Type": "application/json"},
                                       json.dumps({"workflowId": workflow_id, "extra": 1}).encode(), (400,)),
        "JSON in bytes that are not UTF-8": ({"Content-Type": "application/json"}, b'{"workflowId": "\xff"}', (400,)),
        "a Content-Type that is neither": ({"Content-Type": "text/plain"}, b"workflowId=1", (400,)),
        # docs/security.md, "bad input that gave 500": each is a 400 now
        "JSON nested 50,000 deep": (as_json, json_with_topic(b"[" * 50_000 + b"]" * 50_000), (400,)),
        "a form field nested 50,000 deep": (form, multipart([field(b"workflowId", wf), field(
            b"inputs", b'{"topic": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")]), (400,)),
        "inputs nested 300 deep": (as_json, json_with_topic(b'{"a": ' * 300 + b"{}" + b"}" * 300), (400,)),
        "a 5,000-digit integer": (as_json, json_with_topic(b"9" * 5000), (400,)),
        "a lone surrogate": (as_json, json_with_topic(b'"\\ud800"'), (400,)),
        "NaN": (as_json, json_with_topic(b"NaN"), (400,)),
        "Infinity": (as_json, json_with_topic(b"Infinity"), (400,)),
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("endpoint", ["/execute", "/execute/stream"])
def test_malformed_multipart_and_oversized_fields_are_each_a_4xx_with_the_uniform_error(
        dev_runtime: Any, fuzz_targets: dict, endpoint: str):
    auth = {"Authorization": f"Bearer {dev_runtime.token}"}
    problems = []
    with httpx.Client(base_url=dev_runtime.public_url, timeout=httpx.Timeout(30.0)) as client:
        for name, (headers, body, allowed) in malformed_corpus(fuzz_targets["workflow_id"]).items():
            for chunked in (False, True):  # a declared length, and a body streamed without one
                content = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
                response = client.post(f"{RUNS}{endpoint}", headers={**auth, **headers}, content=content)
                where = f"{name} ({'chunked' if chunked else 'Content-Length'})"
                if response.status_code not in allowed:
                    problems.append(f"{where}: {response.status_code} {response.text[:200]}")
                problems += [f"{where}: {p}" for p in uniform_error_problems(response)]
    assert problems == [], "\n".join(problems)



@pytest.mark.parametrize("endpoint", ["/execute", "/execute/stream"])
def test_a_multipart_body_without_its_closing_boundary_is_refused(dev_runtime: Any, fuzz_targets: dict,
                                                                  endpoint: str):
    body = multipart([field(b"workflowId", fuzz_targets["workflow_id"].encode()), field(b"inputs", b"{}")],
                     close=False)
    response = httpx.post(f"{dev_runtime.public_url}{RUNS}{endpoint}", content=body, timeout=30,
                          headers={"Authorization": f"Bearer {dev_runtime.token}",
                                   "Content-Type": "multipart/form-data; boundary=fuzzBOUNDARY"})
    assert response.status_code == 400 and uniform_error_problems(response) == []
