"""`workflow-runs dev` as a user runs it: a subprocess on free ports, spoken to over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
from workflow_runs_dev.dynamodb_local import free_port

from tests.e2e.devserver import ROOT, RUNS, THREE_STEP, DevServer, console_script


def test_banner_says_which_database_and_prints_a_dev_token(dev_server: DevServer):
    assert "DynamoDB Local" in dev_server.banner or "moto" in dev_server.banner
    assert "DEV-ONLY" in dev_server.banner and dev_server.token
    assert f"{dev_server.public}/api/v1/workflow-runs" in dev_server.banner


def test_printed_token_lists_runs(dev_server: DevServer):
    response = httpx.get(f"{dev_server.public}/api/v1/workflow-runs",
                         headers={"Authorization": f"Bearer {dev_server.token}"})
    assert response.status_code == 200
    assert response.json()["success"] is True and isinstance(response.json()["data"], list)


def test_no_token_is_401_and_the_internal_listener_trusts_x_tenant_id(dev_server: DevServer):
    assert httpx.get(f"{dev_server.public}/api/v1/workflow-runs", headers={"X-Tenant-Id": "dev"}).status_code == 401
    response = httpx.get(f"{dev_server.internal}/api/v1/workflows", headers={"X-Tenant-Id": "dev"})
    assert response.status_code == 200
    assert THREE_STEP in [w["id"] for w in response.json()["data"]]


def test_blocking_execute_of_an_example_completes(dev_server: DevServer):
    response = httpx.post(f"{dev_server.public}/api/v1/workflow-runs/execute",
                          headers={"Authorization": f"Bearer {dev_server.token}"},
                          files={"workflowId": (None, THREE_STEP), "inputs": (None, '{"name": "tides"}')}, timeout=40)
    assert response.status_code == 200, response.text
    run = response.json()["workflowRun"]
    assert response.json()["success"] is True and run["status"] == "completed"
    assert [a["stepId"] for a in run["activityRuns"]] == ["greet", "shout", "repeat"]
    assert run["activityRuns"][0]["outputs"] == {"greeting": "Hello, tides!"}


def test_the_dev_jwks_is_served_on_the_public_listener(dev_server: DevServer):
    keys = httpx.get(f"{dev_server.public}/.well-known/jwks.json").json()["keys"]
    assert keys and all("d" not in key for key in keys)  # the public half only


def test_next_token_reads_a_list_to_its_end_and_a_changed_token_is_400(dev_server: DevServer):
    headers = {"Authorization": f"Bearer {dev_server.token}"}
    with httpx.Client(base_url=dev_server.public, headers=headers, timeout=30) as http:
        for _ in range(3):
            assert http.post(f"{RUNS}/execute", json={"workflowId": THREE_STEP}).status_code in (200, 202)
        total = http.get(RUNS).json()["pagination"]["total"]
        seen, params = [], {"limit": 1, "workflowId": THREE_STEP}
        while True:
            body = http.get(RUNS, params=params).json()
            seen += [r["id"] for r in body["data"]]
            token = body["pagination"]["nextToken"]
            if token is None:
                break
            params = {"limit": 1, "workflowId": THREE_STEP, "nextToken": token}
        assert len(seen) == len(set(seen)) == total >= 3
        first = http.get(RUNS, params={"limit": 1}).json()["pagination"]["nextToken"]
        assert http.get(RUNS, params={"limit": 1, "nextToken": first[:-2] + "AA"}).status_code == 400
        deep = http.get(RUNS, params={"page": 1001, "limit": 10})
        assert deep.status_code == 400 and "nextToken" in str(deep.json()["details"])


def test_ctrl_c_stops_every_process_it_started(dev_server: DevServer):
    children = subprocess.run(["pgrep", "-P", str(dev_server.process.pid)], capture_output=True, text=True,
                              check=False).stdout.split()  # pgrep exits 1 when there are none
    dev_server.process.send_signal(signal.SIGINT)
    assert dev_server.process.wait(timeout=30) == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


# ------------------------------------------------------------------ an already running DynamoDB, and faults


def _start_dev(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`workflow-runs dev` with `args`, once its banner is out (the process and the banner)."""
    process = subprocess.Popen([console_script(), "dev", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lines and lines[-1].startswith("Ctrl-C stops everything")):
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
    return process, "".join(lines)


def test_a_store_that_stays_contended_answers_503_with_retry_after_and_creates_nothing(dynamodb_local_endpoint: str):
    # Given `workflow-runs dev` on a DynamoDB where every transaction meets a conflict
    suffix = uuid.uuid4().hex[:10]
    port, internal_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "JWKS_URL"},
           "RUNS_TABLE": f"runs-{suffix}", "EVENTS_TABLE": f"events-{suffix}"}
    # (the example workflows written first by a calm start: loading them is itself a write that a
    # store conflicting on every transaction never lets through, and dev waits that out at start)
    calm, _ = _start_dev(["--port", str(port), "--internal-port", str(internal_port),
                          "--dynamodb-endpoint", dynamodb_local_endpoint], env)
    calm.send_signal(signal.SIGINT)
    assert calm.wait(timeout=30) == 0
    process, banner = _start_dev(["--port", str(port), "--internal-port", str(internal_port),
                                  "--dynamodb-endpoint", dynamodb_local_endpoint, "--no-examples",
                                  "--inject-faults", "conflict=1.0,throttle=0,overlap=off"], env)
    try:
        assert "Ctrl-C" in banner, banner
        token = re.search(r"^export TOKEN=(\S+)$", banner, re.MULTILINE).group(1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as http:
            # When a run is executed
            response = http.post(f"{RUNS}/execute", json={"workflowId": THREE_STEP})
            # Then the answer is 503 Unavailable with Retry-After, and no run exists
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"].isdigit()
            assert response.json()["error"] == "Unavailable"
            assert http.get(RUNS).json()["pagination"]["total"] == 0
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


def test_help_says_how_to_use_a_running_dynamodb_and_inject_faults():
    help_text = subprocess.run([console_script(), "dev", "--help"], capture_output=True, text=True, check=True).stdout
    flat = " ".join(help_text.split())
    assert "--dynamodb-endpoint URL" in flat
    assert "use an already running DynamoDB at URL" in flat and "created when missing and reused when present" in flat
    assert "--inject-faults SPEC" in flat and "conflict=0.2,throttle=0.1" in flat

    refused = subprocess.run([console_script(), "dev", "--inject-faults", "conflict=lots"], capture_output=True,
                             text=True, check=False)
    assert refused.returncode == 2 and "conflict must be a number from 0 to 1" in refused.stderr


def test_dev_on_a_running_dynamodb_uses_it_and_says_loudly_that_faults_are_injected(dynamodb_local_endpoint: str):
    import boto3

    db = boto3.session.Session().client("dynamodb", endpoint_url=dynamodb_local_endpoint)
    suffix = uuid.uuid4().hex[:10]
    tables = {"RUNS_TABLE": f"runs-{suffix}", "EVENTS_TABLE": f"events-{suffix}"}
    port, internal_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "JWKS_URL"}, **tables}
    process, banner = _start_dev(["--port", str(port), "--internal-port", str(internal_port), "--no-examples",
                                  "--dynamodb-endpoint", dynamodb_local_endpoint,
                                  "--inject-faults", "conflict=0.2,throttle=0.1,seed=7"], env)
    try:
        assert "Ctrl-C" in banner, banner

        # Then it names the DynamoDB it uses and the tables it created there, starts no DynamoDB
        # of its own, and says that faults are injected
        assert f"the DynamoDB at {dynamodb_local_endpoint} (already running" in banner
        assert f"{tables['RUNS_TABLE']} (created), {tables['EVENTS_TABLE']} (created)" in banner
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True,
                                  check=False).stdout.split()
        commands = [Path(f"/proc/{pid}/cmdline") for pid in children]
        assert not [c for c in commands if c.exists() and "java" in c.read_text(errors="replace")]
        assert "FAULTS INJECTED" in banner
        assert ("20% of transactions cancelled at random and every one overlapping another in flight "
                "(TransactionConflict), 10% of requests throttled, seed 7") in banner
        assert db.describe_table(TableName=tables["RUNS_TABLE"])["Table"]["TableStatus"] == "ACTIVE"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    # … and leaves that DynamoDB running, its tables in place
    assert db.describe_table(TableName=tables["EVENTS_TABLE"])["Table"]["TableName"] == tables["EVENTS_TABLE"]
