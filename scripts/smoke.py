"""Post-deploy smoke check: one blocking execute and one streamed execute of an example
workflow through the SAME base URL, compared with each other and with what the workflow
must produce. Exits 0 when everything matches, 1 on any difference, 2 when it could not
run (bad arguments, no token, unreachable).

    python -m scripts.smoke --url https://<api>/<stage>/api/v1/workflow-runs --token "$TOKEN"
    SMOKE_URL=… SMOKE_TOKEN=… make smoke
    python -m scripts.smoke --url http://127.0.0.1:8000/api/v1/workflow-runs --token …   # workflow-runs dev

Without a token it can fetch one by OAuth 2.0 client credentials (SMOKE_TOKEN_URL,
SMOKE_CLIENT_ID, SMOKE_CLIENT_SECRET, optional SMOKE_AUDIENCE / SMOKE_SCOPE): the issuer
must put the tenant claim in that client's tokens (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKFLOW = ROOT / "examples" / "three-step-transform.yaml"
DEFAULT_INPUTS = {"name": "smoke", "times": 2}
# What the default workflow must produce for DEFAULT_INPUTS, step by step.
DEFAULT_EXPECTED = {
    "greet": {"greeting": "Hello, smoke!"},
    "shout": {"text": "HELLO, SMOKE!", "length": 13},
    "repeat": {"lines": ["HELLO, SMOKE!", "HELLO, SMOKE!"], "totalLength": 26},
}
TERMINAL = {"completed", "failed", "cancelled"}


class SmokeError(Exception):
    """The check could not run at all (exit 2), as opposed to a difference (exit 1)."""


@dataclass
class Report:
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def expect(self, condition: bool, message: str) -> bool:
        if not condition:
            self.differences.append(message)
        return condition


@dataclass
class Frame:
    event: str
    data: Any
    id: str | None


def parse_sse(lines: Iterator[str]) -> Iterator[Frame]:
    """Server-sent events as the spec parses them (comments and `retry:` skipped)."""
    fields: dict[str, list[str]] = {}
    for line in lines:
        if line == "":
            if "data" in fields or "event" in fields:
                raw = "\n".join(fields.get("data", []))
                try:
                    data: Any = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    data = raw
                yield Frame((fields.get("event") or ["message"])[-1], data, (fields.get("id") or [None])[-1])
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))


def steps_of(run: dict[str, Any]) -> dict[str, Any]:
    return {a["stepId"]: a.get("outputs") for a in run.get("activityRuns", [])}


class Smoke:
    def __init__(self, client: httpx.Client, runs_url: str, token: str, *, timeout: float) -> None:
        self.client = client
        self.runs_url = runs_url.rstrip("/")
        if not self.runs_url.endswith("/workflow-runs"):
            raise SmokeError(f"--url must end in /workflow-runs (the PublicApiUrl output), got {runs_url!r}")
        self.workflows_url = self.runs_url.removesuffix("/workflow-runs") + "/workflows"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = timeout

    def put_workflow(self, workflow: dict[str, Any]) -> None:
        """The example must exist for this tenant: put it (an equal stored copy also does)."""
        url = f"{self.workflows_url}/{workflow['id']}"
        body = {k: v for k, v in workflow.items() if k != "id"}  # the id is the path's
        response = self.client.put(url, json=body, headers=self.headers)
        if response.status_code in (200, 201):
            return
        current = self.client.get(url, headers=self.headers)
        stored = current.json().get("workflow", {}) if current.status_code == 200 else {}
        if stored.get("steps") != workflow["steps"]:
            raise SmokeError(f"PUT {url} answered {response.status_code}: {response.text[:300]}")

    def form(self, workflow_id: str, inputs: dict[str, Any]) -> dict[str, tuple[None, str]]:
        return {"workflowId": (None, workflow_id), "inputs": (None, json.dumps(inputs))}

    def execute(self, workflow_id: str, inputs: dict[str, Any], report: Report) -> dict[str, Any] | None:
        """The blocking execute; a 202 is followed to the run's end through its Location."""
        response = self.client.post(
            f"{self.runs_url}/execute", files=self.form(workflow_id, inputs), headers=self.headers
        )
        if response.status_code == 202:
            location = response.headers.get("Location", "")
            report.notes.append(f"blocking execute answered 202 (Location {location}); following it")
            return self.follow(location, report)
        if not report.expect(
            response.status_code == 200, f"execute: HTTP {response.status_code} {response.text[:300]}"
        ):
            return None
        body = response.json()
        report.expect(body.get("success") is True, f"execute: success is {body.get('success')!r}")
        return body.get("workflowRun")

    def follow(self, location: str, report: Report) -> dict[str, Any] | None:
        url = str(httpx.URL(self.runs_url).join(location))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            response = self.client.get(url, headers=self.headers)
            if response.status_code == 200 and response.json()["workflowRun"]["status"] in TERMINAL:
                return response.json()["workflowRun"]
            time.sleep(1)
        report.expect(False, f"the run at {location} did not end within {self.timeout:.0f} s")
        return None

    def stream(self, workflow_id: str, inputs: dict[str, Any], report: Report) -> list[Frame]:
        frames: list[Frame] = []
        with self.client.stream(
            "POST",
            f"{self.runs_url}/execute/stream",
            files=self.form(workflow_id, inputs),
            headers={**self.headers, "Accept": "text/event-stream"},
        ) as response:
            if not report.expect(response.status_code == 200, f"execute/stream: HTTP {response.status_code}"):
                response.read()
                report.differences[-1] += f" {response.text[:300]}"
                return frames
            content_type = response.headers.get("content-type", "")
            report.expect(
                content_type.startswith("text/event-stream"), f"execute/stream: content-type {content_type!r}"
            )
            for frame in parse_sse(response.iter_lines()):
                if frame.event != "ping":
                    frames.append(frame)
        return frames


def compare(
    blocking: dict[str, Any] | None, frames: list[Frame], expected: dict[str, Any] | None, report: Report
) -> None:
    """Every way the two answers, and the workflow's known outputs, may differ."""
    if blocking is not None:
        report.expect(blocking.get("status") == "completed", f"blocking run status {blocking.get('status')!r}")
        if expected is not None:
            report.expect(
                steps_of(blocking) == expected, f"blocking run outputs {steps_of(blocking)} != expected {expected}"
            )
    if not report.expect(bool(frames), "execute/stream: no event at all"):
        return
    first, last = frames[0], frames[-1]
    report.expect(first.event == "workflow-run", f"stream: first event is {first.event!r}, not workflow-run")
    closing = [f for f in frames if f.event in ("result", "error")]
    report.expect(len(closing) == 1, f"stream: {len(closing)} closing events (result/error), expected exactly 1")
    if not report.expect(last.event == "result", f"stream: ends with {last.event!r} {last.data!r}, not result"):
        return
    report.expect(all(f.id for f in frames), "stream: an event without an id (resuming needs every id)")
    streamed = last.data.get("workflowRun", {}) if isinstance(last.data, dict) else {}
    report.expect(last.data.get("success") is True, f"stream: result success is {last.data.get('success')!r}")
    report.expect(streamed.get("status") == "completed", f"streamed run status {streamed.get('status')!r}")
    seen_steps = [f.data.get("content", {}).get("stepId") for f in frames if f.event == "activity-run"]
    streamed_steps = list(steps_of(streamed))
    report.expect(
        set(seen_steps) == set(streamed_steps),
        f"stream: activity-run events for {sorted(set(seen_steps))}, the run has {streamed_steps}",
    )
    if blocking is not None:
        report.expect(
            steps_of(streamed) == steps_of(blocking),
            f"streamed outputs {steps_of(streamed)} != blocking outputs {steps_of(blocking)}",
        )
    if expected is not None:
        report.expect(steps_of(streamed) == expected, f"streamed outputs {steps_of(streamed)} != expected {expected}")


def client_credentials_token(environ: dict[str, str] | os._Environ[str], client: httpx.Client) -> str:
    url = environ.get("SMOKE_TOKEN_URL")
    if not url:
        raise SmokeError("no token: give --token (or SMOKE_TOKEN), or SMOKE_TOKEN_URL with SMOKE_CLIENT_ID/SECRET")
    form = {
        "grant_type": "client_credentials",
        "client_id": environ.get("SMOKE_CLIENT_ID", ""),
        "client_secret": environ.get("SMOKE_CLIENT_SECRET", ""),
    }
    for key, name in (("audience", "SMOKE_AUDIENCE"), ("scope", "SMOKE_SCOPE")):
        if environ.get(name):
            form[key] = environ[name]
    response = client.post(url, data=form)
    if response.status_code != 200 or "access_token" not in response.json():
        raise SmokeError(f"token endpoint answered {response.status_code}")
    return str(response.json()["access_token"])


def run(argv: list[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.smoke", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("SMOKE_URL"),
        help="the runs URL, …/api/v1/workflow-runs (the stack's PublicApiUrl; env SMOKE_URL)",
    )
    parser.add_argument("--token", default=os.environ.get("SMOKE_TOKEN"), help="a JWT for a tenant (env SMOKE_TOKEN)")
    parser.add_argument("--workflow", type=Path, default=DEFAULT_WORKFLOW, help="the workflow to run (YAML)")
    parser.add_argument("--inputs", type=json.loads, default=None, help="its inputs (JSON)")
    parser.add_argument(
        "--expect",
        type=json.loads,
        default=None,
        help="step id → outputs it must produce (JSON; the default workflow has its own)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for each call and a followed run")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("--url (or SMOKE_URL) is required")
    workflow = yaml.safe_load(args.workflow.read_text())
    is_default = args.workflow.resolve() == DEFAULT_WORKFLOW and args.inputs is None
    inputs = DEFAULT_INPUTS if args.inputs is None else args.inputs
    expected = args.expect if args.expect is not None else (DEFAULT_EXPECTED if is_default else None)

    report = Report()
    timeout = httpx.Timeout(args.timeout, connect=10.0)
    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
            token = args.token or client_credentials_token(os.environ, client)
            smoke = Smoke(client, args.url, token, timeout=args.timeout)
            smoke.put_workflow(workflow)
            blocking = smoke.execute(workflow["id"], inputs, report)
            frames = smoke.stream(workflow["id"], inputs, report)
    except (SmokeError, httpx.HTTPError) as error:
        print(f"smoke: could not run: {error}", file=sys.stderr)
        return 2
    compare(blocking, frames, expected, report)
    for note in report.notes:
        print(f"smoke: note: {note}")
    if report.differences:
        for difference in report.differences:
            print(f"smoke: DIFFERENCE: {difference}", file=sys.stderr)
        return 1
    print(f"smoke: ok — blocking and streamed runs of {workflow['id']} through {args.url} match ({len(frames)} events)")
    return 0


def main() -> None:
    raise SystemExit(run())


if __name__ == "__main__":
    main()
