"""An embedded DynamoDB for one machine: DynamoDB Local (AWS's own implementation) when
Java 17+ is present, moto's server otherwise.

DynamoDB Local ships inside the npm package `amplify-dynamodb-simulator`; `fetch()` unpacks
it once into a cache folder outside the repository (XDG cache, or WORKFLOW_RUNS_CACHE).
Run `python -m workflow_runs_dev.dynamodb_local fetch` to prefetch it (the Makefile does).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIMULATOR_PACKAGE = "amplify-dynamodb-simulator@2.9.30"  # carries DynamoDB Local 1.25.1
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}


def cache_dir() -> Path:
    root = os.environ.get("WORKFLOW_RUNS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "workflow-runs"
    )
    return Path(root) / "dynamodb-local-1.25.1"


def java_major_version() -> int | None:
    java = shutil.which("java")
    if not java:
        return None
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def fetch() -> Path:
    """Unpack DynamoDB Local into the cache once; return the folder holding the jar."""
    target = cache_dir()
    if (target / "DynamoDBLocal.jar").exists():
        return target
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            ["npm", "pack", SIMULATOR_PACKAGE, "--silent", "--pack-destination", work],
            check=True, cwd=work, stdout=subprocess.DEVNULL,
        )
        archive = next(Path(work).glob("*.tgz"))
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/emulator/")]
            tar.extractall(work, members=members, filter="data")
        staging = target.with_suffix(".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(work) / "package" / "emulator"), staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EmbeddedDynamoDB:
    endpoint_url: str
    kind: str  # "dynamodb-local" | "moto"
    _process: subprocess.Popen | None = None
    _moto: Any = None
    _log: Any = field(default=None, repr=False)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._moto is not None:
            self._moto.stop()
        if self._log is not None:
            self._log.close()


def start_dynamodb_local(port: int | None = None, timeout: float = 60.0) -> EmbeddedDynamoDB:
    home = fetch()
    port = port or free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; EmbeddedDynamoDB.stop closes it
    process = subprocess.Popen(
        ["java", f"-Djava.library.path={home / 'DynamoDBLocal_lib'}", "-jar", str(home / "DynamoDBLocal.jar"),
         "-inMemory", "-disableTelemetry", "-port", str(port)],
        cwd=home, stdout=log, stderr=subprocess.STDOUT,
    )
    db = EmbeddedDynamoDB(endpoint_url=f"http://127.0.0.1:{port}", kind="dynamodb-local", _process=process, _log=log)
    _wait_ready(db, process, timeout)
    return db


def start_moto_server(port: int | None = None) -> EmbeddedDynamoDB:
    from moto.server import ThreadedMotoServer  # dev-only dependency

    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return EmbeddedDynamoDB(endpoint_url=f"http://127.0.0.1:{port}", kind="moto", _moto=server)


def use_local_credentials() -> None:
    """Dummy credentials and a region for boto3, unless the environment already has them."""
    for name, value in DUMMY_CREDENTIALS.items():
        os.environ.setdefault(name, value)


def start_embedded(prefer: str = "auto", port: int | None = None) -> EmbeddedDynamoDB:
    """DynamoDB Local when Java 17+ is here (or asked for), moto's server otherwise."""
    use_local_credentials()
    if prefer == "moto" or (prefer == "auto" and (java_major_version() or 0) < 17):
        return start_moto_server(port)
    return start_dynamodb_local(port)


def _wait_ready(db: EmbeddedDynamoDB, process: subprocess.Popen, timeout: float) -> None:
    import boto3

    client = boto3.session.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
    ).client("dynamodb", endpoint_url=db.endpoint_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            db._log.seek(0)
            raise RuntimeError(f"DynamoDB Local exited: {db._log.read()[-2000:].decode(errors='replace')}")
        try:
            client.list_tables()
            return
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.2)
    db.stop()
    raise RuntimeError("DynamoDB Local did not become ready in time")


def create_tables(client: Any, runs_table: str, events_table: str) -> list[str]:
    """Create each table that is missing, from the shared key layout; check that each one
    present has that layout's keys, indexes and stream, and reuse it. Returns the names created.

    DescribeTable per table rather than ListTables: a shared DynamoDB may hold more tables
    than one ListTables page, and another process may create the same table meanwhile."""
    from workflow_runs import keys

    created = []
    for spec in (keys.runs_table_spec(runs_table), keys.events_table_spec(events_table)):
        name = spec["TableName"]
        try:
            existing = client.describe_table(TableName=name)["Table"]
        except client.exceptions.ResourceNotFoundException:
            try:
                client.create_table(**spec)
                created.append(name)
            except client.exceptions.ResourceInUseException:
                pass  # created by someone else since we looked
            client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
            continue
        problems = layout_differences(spec, existing)
        if problems:
            raise RuntimeError(f"table {name} exists with another layout ({'; '.join(problems)}): "
                               "name other tables with RUNS_TABLE / EVENTS_TABLE")
        if existing.get("TableStatus") != "ACTIVE":
            client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    return created


def layout_differences(spec: dict[str, Any], table: dict[str, Any]) -> list[str]:
    """What an existing table (DescribeTable's `Table`) lacks of a CreateTable spec."""
    problems = []
    if table.get("KeySchema") != spec["KeySchema"]:
        problems.append(f"key {table.get('KeySchema')}")
    missing = ({i["IndexName"] for i in spec.get("GlobalSecondaryIndexes", [])}
               - {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])})
    if missing:
        problems.append(f"no index {', '.join(sorted(missing))}")
    wanted = spec.get("StreamSpecification")
    stream = table.get("StreamSpecification") or {}
    if wanted and (not stream.get("StreamEnabled") or stream.get("StreamViewType") != wanted["StreamViewType"]):
        problems.append(f"stream {stream or 'off'}, not {wanted['StreamViewType']}")
    return problems


if __name__ == "__main__":
    if sys.argv[1:] == ["fetch"]:
        if (java_major_version() or 0) >= 17:
            print(f"DynamoDB Local ready in {fetch()}")
        else:
            print("Java 17+ not found: the dev server and tests will use moto's DynamoDB instead")
    else:
        print("usage: python -m workflow_runs_dev.dynamodb_local fetch", file=sys.stderr)
        sys.exit(2)
