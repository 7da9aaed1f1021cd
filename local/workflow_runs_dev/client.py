"""`workflow-runs run | runs | approve | reject`: a client of the Workflow Runs API for a terminal.

Talks to `--url` / WORKFLOW_RUNS_URL (default http://127.0.0.1:8000, the dev server) with
`--token` / WORKFLOW_RUNS_TOKEN as the bearer (the dev server's printed token works as is),
or, without a token, `--tenant` / WORKFLOW_RUNS_TENANT as X-Tenant-Id (the internal listener).

`--follow` reads the run's Server-Sent Events (execute/stream, then the run's /events) and
prints a line per step's status change, `thinking` text as it streams and the final outputs;
a dropped stream is resumed with Last-Event-ID, so nothing is lost and nothing shows twice.

Exit codes (EXIT_CODES below; the same for every command that reports a run's end):
  0 the run completed (or, for a command that does not follow a run, it succeeded)
  1 the run failed           2 bad usage (argparse's own)
  3 the run was cancelled    4 the API refused the request (4xx/5xx; its error is printed)
  5 the API could not be reached, answered with something that is not its JSON (a proxy's
    page, another server), or the stream could not be resumed
  6 the run had not ended when the command returned (`run` without --follow, after the
    blocking execute's budget)
  130 interrupted (Ctrl-C): one line says so; a followed run goes on on the server

Every string that comes from the server (names, messages, outputs, thinking text) is printed
with its control characters removed (C0 but newline and tab, DEL, C1, so ESC too): a workflow
name cannot retitle the terminal, clear it or write the clipboard.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self, TextIO, cast

import httpx
from workflow_runs import events
from workflow_runs.states import TERMINAL_VALUES, Status

RUNS = "/api/v1/workflow-runs"
WORKFLOWS = "/api/v1/workflows"
DEFAULT_URL = "http://127.0.0.1:8000"
STATUSES = tuple(status.value for status in Status)
TERMINAL = TERMINAL_VALUES

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_API_ERROR = 4
EXIT_UNREACHABLE = 5
EXIT_NOT_ENDED = 6
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C
EXIT_CODES = {Status.COMPLETED.value: EXIT_COMPLETED, Status.FAILED.value: EXIT_FAILED,
              Status.CANCELLED.value: EXIT_CANCELLED}

# A stream that dropped is resumed after the server's `retry:` (capped here), at most this
# many times in a row without receiving an event in between.
MAX_RETRY_SECONDS = 10.0
DEFAULT_RETRY_SECONDS = 3.0
MAX_FAILED_RESUMES = 8
# The server pings every 9 s: a read that waits longer than this means the connection is gone.
READ_TIMEOUT_SECONDS = 30.0


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body if isinstance(body, dict) else {}
        details = self.body.get("details")
        text = "; ".join(map(str, details)) if isinstance(details, list) else (details or "")
        super().__init__(f"{status} {self.body.get('error') or 'error'}" + (f": {text}" if text else ""))


class Unreachable(Exception):
    pass


class Interrupted(Exception):
    def __init__(self, run_id: str | None):
        self.run_id = run_id
        super().__init__(run_id or "")


# C0 controls but \t and \n, DEL, and C1 (ESC is C0): what a terminal acts on instead of showing.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """`text` with the control characters a terminal would obey removed."""
    return _CONTROL.sub("", text)


class SafeText:
    """A text stream that writes everything through `clean`: every line the client prints
    carries server-supplied text somewhere, so the one safe place to strip is the stream."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    @classmethod
    def wrap(cls, stream: TextIO) -> TextIO:
        return stream if isinstance(stream, cls) else cast(TextIO, cls(stream))

    def write(self, text: str) -> int:
        return self.stream.write(clean(text))

    def flush(self) -> None:
        self.stream.flush()


class UsageError(Exception):
    pass


# ------------------------------------------------------------------ arguments


def add_commands(commands: Any) -> None:
    """Add the client's subcommands to `workflow-runs` (cli.py's subparsers)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("WORKFLOW_RUNS_URL") or DEFAULT_URL,
                        help="the API's base URL (env WORKFLOW_RUNS_URL; default: %(default)s)")
    common.add_argument("--token", default=os.environ.get("WORKFLOW_RUNS_TOKEN"),
                        help="bearer token (env WORKFLOW_RUNS_TOKEN); the dev server prints one")
    common.add_argument("--tenant", default=os.environ.get("WORKFLOW_RUNS_TENANT"),
                        help="without a token: X-Tenant-Id, for the internal listener only "
                             "(env WORKFLOW_RUNS_TENANT)")
    common.add_argument("--json", action="store_true",
                        help="machine-readable output: the API's replies as JSON; with --follow, one JSON "
                             "object per event (NDJSON)")
    epilog = ("exit codes: 0 completed (or done), 1 run failed, 2 usage, 3 run cancelled, 4 API error, "
              "5 API unreachable or stream lost, 6 run not ended yet")

    run = commands.add_parser("run", parents=[common], help="execute a workflow (and follow it)", epilog=epilog,
                              description="Execute a workflow; with --follow, watch it live to its end.")
    run.add_argument("workflow_id", metavar="workflowId")
    run.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                     help="an input (repeatable); VALUE is converted to the input's declared type")
    run.add_argument("--inputs-file", metavar="FILE", help="a JSON object of inputs (--input wins over it)")
    run.add_argument("--follow", action="store_true", help="stream the run's events until it ends")
    run.add_argument("--idempotency-key", help="send Idempotency-Key: a repeat returns the first run")
    run.set_defaults(handler=cmd_run, usage_parser=run)

    runs = commands.add_parser("runs", help="list, show, cancel or retry runs", epilog=epilog)
    actions = runs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[common], help="list runs, newest first", epilog=epilog)
    listing.add_argument("--workflow-id")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--search", help="case-insensitive part of the workflow name")
    listing.add_argument("--limit", type=int, help="runs per page (1-100)")
    listing.add_argument("--page", type=int)
    listing.add_argument("--next-token", help="the page after the one that printed this token")
    listing.set_defaults(handler=cmd_list, usage_parser=listing)
    get = actions.add_parser("get", parents=[common], help="show one run", epilog=epilog)
    get.add_argument("run_id", metavar="runId")
    get.add_argument("--follow", action="store_true", help="stream the run's events until it ends")
    get.set_defaults(handler=cmd_get, usage_parser=get)
    cancel = actions.add_parser("cancel", parents=[common], help="cancel runs", epilog=epilog)
    cancel.add_argument("run_ids", metavar="runId", nargs="*")
    cancel.add_argument("--workflow-id", help="cancel every run of this workflow that has not ended")
    cancel.add_argument("--reason")
    cancel.set_defaults(handler=cmd_cancel, usage_parser=cancel)
    retry = actions.add_parser("retry", parents=[common], help="retry a failed run from its failed step",
                               epilog=epilog)
    retry.add_argument("run_id", metavar="runId")
    retry.add_argument("--follow", action="store_true", help="stream the new run's events until it ends")
    retry.set_defaults(handler=cmd_retry, usage_parser=retry)

    for decision in ("approve", "reject"):
        decide = commands.add_parser(decision, parents=[common], epilog=epilog,
                                     help=f"{decision} a run's waiting approval step")
        decide.add_argument("run_id", metavar="runId")
        decide.add_argument("step_id", metavar="stepId")
        decide.add_argument("--comment")
        if decision == "approve":
            decide.add_argument("--outputs", metavar="JSON", help="a JSON object merged into the step's outputs")
        decide.add_argument("--follow", action="store_true", help="then stream the run's events until it ends")
        decide.set_defaults(handler=cmd_decide, decision=decision, usage_parser=decide)


def run_command(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None,
                transport: httpx.BaseTransport | None = None) -> int:
    out = SafeText.wrap(out or sys.stdout)
    err = SafeText.wrap(err or sys.stderr)
    try:
        with Api(args.url, token=args.token, tenant=args.tenant, transport=transport) as api:
            code: int = args.handler(api, args, out)
            return code
    except UsageError as exc:
        print(f"workflow-runs: {exc}", file=err)
        return EXIT_USAGE
    except ApiError as exc:
        if args.json:
            print(json.dumps({"status": exc.status, **exc.body}), file=out)
        print(f"workflow-runs: the API answered {exc}", file=err)
        return EXIT_API_ERROR
    except Unreachable as exc:
        print(f"workflow-runs: {exc}", file=err)
        return EXIT_UNREACHABLE
    except (Interrupted, KeyboardInterrupt) as exc:
        run_id = exc.run_id if isinstance(exc, Interrupted) else None
        goes_on = (f"; run {run_id} goes on (follow it again: workflow-runs runs get {run_id} --follow)"
                   if run_id else "")
        print(f"\nworkflow-runs: interrupted{goes_on}", file=err, flush=True)
        return EXIT_INTERRUPTED


# ------------------------------------------------------------------ HTTP


class Api:
    def __init__(self, url: str, token: str | None = None, tenant: str | None = None,
                 transport: httpx.BaseTransport | None = None):
        headers = {"Accept": "application/json", "User-Agent": "workflow-runs-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token.removeprefix('Bearer ').strip()}"
        elif tenant:
            headers["X-Tenant-Id"] = tenant
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, transport=transport,
                                 timeout=httpx.Timeout(60.0, read=READ_TIMEOUT_SECONDS))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc or type(exc).__name__}") from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, _json_or_none(response))
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return reply_json(self.call(method, path, **kwargs))


def reply_json(response: httpx.Response) -> Any:
    """A successful reply's JSON; anything else is not this API answering."""
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise Unreachable(f"{response.request.url} answered {response.status_code} with {kind}, not the API's "
                          "JSON (is --url / WORKFLOW_RUNS_URL the API's base URL?)") from None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


# ------------------------------------------------------------------ commands


def cmd_run(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    workflow = api.json("GET", f"{WORKFLOWS}/{args.workflow_id}")["workflow"]
    inputs = collect_inputs(workflow, args.input, args.inputs_file)
    body = {"workflowId": args.workflow_id, "inputs": inputs}
    key = args.idempotency_key
    if args.follow:
        return Follower(api, out, as_json=args.json).follow(execute=body, idempotency_key=key or str(uuid.uuid4()))
    response = api.call("POST", f"{RUNS}/execute", json=body, headers={"Idempotency-Key": key} if key else {})
    reply = reply_json(response)
    run = reply["workflowRun"]
    if args.json:
        print(json.dumps(reply), file=out)
    else:
        print_run(run, out)
        if response.status_code == 202:
            print(f"still {run['status']}; follow it with: workflow-runs runs get {run['id']} --follow", file=out)
    return EXIT_CODES.get(run["status"], EXIT_NOT_ENDED)


def cmd_list(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    params = {"workflowId": args.workflow_id, "status": args.status, "search": args.search, "limit": args.limit,
              "page": args.page, "nextToken": args.next_token}
    reply = api.json("GET", RUNS, params={k: v for k, v in params.items() if v is not None})
    if args.json:
        print(json.dumps(reply), file=out)
        return EXIT_COMPLETED
    for run in reply["data"]:
        print(f"{run['id']}  {run['status']:<9}  {run['createdAt']}  {run.get('workflowName') or run['workflowId']}",
              file=out)
    pagination = reply["pagination"]
    print(f"{len(reply['data'])} of {pagination['total']} run(s)", file=out)
    if pagination.get("nextToken"):
        # The token is bound to the filters that made this page: the hint repeats them.
        again = ["workflow-runs", "runs", "list"]
        for flag, value in (("--workflow-id", args.workflow_id), ("--status", args.status),
                            ("--search", args.search), ("--limit", args.limit)):
            if value is not None:
                again += [flag, str(value)]
        print(f"next page: {shlex.join([*again, '--next-token', pagination['nextToken']])}", file=out)
    return EXIT_COMPLETED


def cmd_get(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    if args.follow:
        return Follower(api, out, as_json=args.json).follow(run_id=args.run_id)
    reply = api.json("GET", f"{RUNS}/{args.run_id}")
    if args.json:
        print(json.dumps(reply), file=out)
    else:
        print_run(reply["workflowRun"], out)
    return EXIT_COMPLETED


def cmd_cancel(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    if bool(args.run_ids) == bool(args.workflow_id):
        raise UsageError("give run ids or --workflow-id (one of them)")
    body: dict[str, Any] = {"runIds": args.run_ids} if args.run_ids else {"workflowId": args.workflow_id}
    if args.reason:
        body["reason"] = args.reason
    reply = api.json("POST", f"{RUNS}/cancel", json=body)
    if args.json:
        print(json.dumps(reply), file=out)
    else:
        for result in reply["results"]:
            message = f"  ({result['message']})" if result.get("message") else ""
            print(f"{result['runId']}  {result['status']}{message}", file=out)
    # Asked to cancel something that is not there, or that could not be cancelled: an error.
    return EXIT_API_ERROR if any(r["status"] in ("not_found", "error") for r in reply["results"]) else EXIT_COMPLETED


def cmd_retry(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    reply = api.json("POST", f"{RUNS}/{args.run_id}/retry", headers={"Idempotency-Key": str(uuid.uuid4())})
    run = reply["workflowRun"]
    if args.follow:
        if not args.json:
            print(f"retrying {args.run_id} as {run['id']}", file=out, flush=True)
        return Follower(api, out, as_json=args.json).follow(run_id=run["id"])
    if args.json:
        print(json.dumps(reply), file=out)
    else:
        print(f"retrying {args.run_id} as {run['id']} ({run['status']})", file=out)
    return EXIT_COMPLETED


def cmd_decide(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    body: dict[str, Any] = {}
    if args.comment:
        body["comment"] = args.comment
    if getattr(args, "outputs", None):
        try:
            body["outputs"] = json.loads(args.outputs)
        except ValueError as exc:
            raise UsageError(f"--outputs is not JSON: {exc}") from None
    reply = api.json("POST", f"{RUNS}/{args.run_id}/steps/{args.step_id}/{args.decision}", json=body)
    run = reply["workflowRun"]
    if args.follow:
        return Follower(api, out, as_json=args.json).follow(run_id=run["id"])
    if args.json:
        print(json.dumps(reply), file=out)
    else:
        print(f"{args.decision}d step {args.step_id} of run {run['id']}: the run is {run['status']}", file=out)
    return EXIT_COMPLETED


# ------------------------------------------------------------------ inputs


def collect_inputs(workflow: dict[str, Any], pairs: list[str], inputs_file: str | None) -> dict[str, Any]:
    """`--inputs-file` (a JSON object), then each `--input NAME=VALUE`, VALUE converted to the
    declared type of that input (unknown names are sent as strings: the API names them in its 400)."""
    inputs: dict[str, Any] = {}
    if inputs_file:
        try:
            with open(inputs_file, encoding="utf-8") as file:
                loaded = json.load(file)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--inputs-file {inputs_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--inputs-file {inputs_file}: not a JSON object")
        inputs.update(loaded)
    declared = {i["name"]: i.get("type", "string") for i in workflow.get("inputs", [])}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--input {pair!r}: expected NAME=VALUE")
        inputs[name] = convert(name, value, declared.get(name, "string"))
    return inputs


def convert(name: str, value: str, kind: str) -> Any:
    try:
        if kind == "string":
            return value
        if kind == "boolean":
            lowered = value.strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError("expected true or false")
        if kind == "integer":
            return int(value)
        if kind == "number":
            number = float(value)
            return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
        parsed = json.loads(value)  # object, array
        if kind == "object" and not isinstance(parsed, dict) or kind == "array" and not isinstance(parsed, list):
            raise ValueError(f"expected a JSON {kind}")
        return parsed
    except ValueError as exc:
        raise UsageError(f"--input {name}: not a valid {kind} ({exc})") from None


# ------------------------------------------------------------------ following a run


@dataclass
class Event:
    name: str
    data: Any
    id: str | None


def parse_sse(lines: Iterator[str], on_retry: Any) -> Iterator[Event]:
    name, event_id = "", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                text = "\n".join(data)
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = text
                yield Event(name or "message", payload, event_id)
            name, data, event_id = "", [], None
            continue
        if line.startswith(":"):
            continue
        field_name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field_name == "event":
            name = value
        elif field_name == "data":
            data.append(value)
        elif field_name == "id":
            event_id = value
        elif field_name == "retry" and value.isdigit():
            on_retry(int(value) / 1000)


@dataclass
class Follower:
    api: Api
    out: TextIO
    as_json: bool = False
    err: TextIO = field(default_factory=lambda: SafeText.wrap(sys.stderr))
    last_id: str | None = None
    seen: set[str] = field(default_factory=set)
    run_id: str | None = None
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    resumes: int = 0
    sleep: Callable[[float], None] = time.sleep
    _thinking_step: str | None = None

    def follow(self, *, execute: dict[str, Any] | None = None, idempotency_key: str | None = None,
               run_id: str | None = None) -> int:
        try:
            return self._follow(execute, idempotency_key, run_id)
        except KeyboardInterrupt:
            raise Interrupted(self.run_id) from None

    def _follow(self, execute: dict[str, Any] | None, idempotency_key: str | None, run_id: str | None) -> int:
        self.run_id = run_id
        if run_id:
            self._line(f"run {run_id}")
        failures = 0
        while True:
            try:
                if self.run_id is None and execute is not None:
                    # The key makes a repeated POST (a drop before the first event) return the
                    # run already started instead of starting another.
                    request = self.api.http.build_request("POST", f"{RUNS}/execute/stream", json=execute,
                                                          headers={"Idempotency-Key": idempotency_key or ""})
                else:
                    headers = {"Accept": "text/event-stream"}
                    if self.last_id:
                        headers["Last-Event-ID"] = self.last_id
                    request = self.api.http.build_request("GET", f"{RUNS}/{self.run_id}/events", headers=headers)
                response = self.api.http.send(request, stream=True)
                try:
                    if response.status_code == 204:  # nothing after our last event: the run ended
                        return self._ended_already()
                    if response.status_code >= 400:
                        response.read()
                        error = ApiError(response.status_code, _json_or_none(response))
                        if response.status_code != 429 and response.status_code < 500:
                            raise error
                        retry_after = response.headers.get("Retry-After", "")
                        raise httpx.TransportError(str(error)) if not retry_after.isdigit() else _Later(
                            float(retry_after), str(error))
                    for event in parse_sse(response.iter_lines(), self._set_retry):
                        failures = 0
                        ended = self._on_event(event)
                        if ended is not None:
                            return ended
                finally:
                    response.close()
                reason = "the stream ended before the run did"
            except _Later as later:
                reason, wait = str(later), later.seconds
                self._say(f"{reason}; trying again in {wait:.0f} s")
                self.sleep(min(wait, MAX_RETRY_SECONDS))
                continue
            except httpx.TransportError as exc:
                reason = f"connection lost ({exc or type(exc).__name__})"
            failures += 1
            if failures > MAX_FAILED_RESUMES or (self.run_id is None and execute is None):
                raise Unreachable(f"{reason}; gave up after {failures} attempt(s)")
            self.resumes += 1
            self._say(f"{reason}; resuming after event {self.last_id or '(start)'}")
            self.sleep(min(self.retry_seconds, MAX_RETRY_SECONDS))

    def _set_retry(self, seconds: float) -> None:
        self.retry_seconds = seconds

    def _on_event(self, event: Event) -> int | None:
        if event.name == events.EVENT_PING:
            return None
        if event.id:
            if event.id in self.seen:
                return None  # shown already (a resumed stream never repeats one; belt and braces)
            self.seen.add(event.id)
            self.last_id = event.id
        if self.as_json:
            print(json.dumps({"event": event.name, "id": event.id, "data": event.data}), file=self.out, flush=True)
        data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
        content = events.content_of(data)
        if event.name == events.EVENT_RUN:
            if self.run_id is None:
                self.run_id = content.get("workflowRunId")
                self._line(f"run {self.run_id}")
            self._line(f"run {content.get('status')}")
        elif (activity := events.activity_of(event.name, data)) is not None:
            self._line(f"  step {activity.get('stepId')}: {activity['status']} (attempt {activity.get('attempt')})")
            outputs = activity.get("outputs")
            if events.waiting_step(event.name, data) and isinstance(outputs, dict) and "prompt" in outputs:
                self._ask(str(activity.get("stepId")), str(outputs["prompt"]))
        elif event.name == events.EVENT_THINKING:
            self._think(str(data.get("stepId")), str(data.get("content", "")))
        elif event.name == events.EVENT_RESULT:
            self._summary(events.carried_run(data) or {})
            return EXIT_COMPLETED
        elif event.name == events.EVENT_ERROR:
            details = events.end_details(data)
            where = f" at step {details['stepId']}" if details and details.get("stepId") else ""
            self._line(f"error{where}: {data.get('error')}")
            if details and details.get("status") in EXIT_CODES:
                if not self.as_json and self.run_id:
                    self._summary(self.api.json("GET", f"{RUNS}/{self.run_id}")["workflowRun"], outputs=False)
                return EXIT_CODES[details["status"]]
            raise Unreachable(f"the run could not be followed: {data.get('error')}")
        return None

    def _ask(self, step_id: str, prompt: str) -> None:
        """A waiting approval: its prompt, and the commands that decide it."""
        run, step = shlex.quote(str(self.run_id)), shlex.quote(step_id)
        self._line(f"    waiting for a decision: {prompt}")
        self._line(f"    decide with: workflow-runs approve {run} {step} [--comment TEXT]")
        self._line(f"             or: workflow-runs reject {run} {step} [--comment TEXT]")

    def _ended_already(self) -> int:
        run = self.api.json("GET", f"{RUNS}/{self.run_id}")["workflowRun"]
        if self.as_json:
            print(json.dumps({"event": None, "id": None, "data": {"workflowRun": run}}), file=self.out, flush=True)
        else:
            self._summary(run)
        return EXIT_CODES.get(run["status"], EXIT_NOT_ENDED)

    # -- output (human lines go to stdout; notes about the connection to stderr)

    def _line(self, text: str) -> None:
        if self.as_json:
            return
        if self._thinking_step is not None:
            print(file=self.out)
            self._thinking_step = None
        print(text, file=self.out, flush=True)

    def _think(self, step_id: str, text: str) -> None:
        if self.as_json:
            return
        if self._thinking_step != step_id:
            self._line(f"  step {step_id} thinking:")
            self.out.write("    ")
            self._thinking_step = step_id
        self.out.write(text.replace("\n", "\n    "))
        self.out.flush()

    def _say(self, text: str) -> None:
        if self._thinking_step is not None and not self.as_json:
            print(file=self.out, flush=True)
            self._thinking_step = None
        print(f"workflow-runs: {text}", file=self.err, flush=True)

    def _summary(self, run: dict[str, Any], outputs: bool = True) -> None:
        if self.as_json or not run:
            return
        self._line(f"finished: {run.get('status')} in {_seconds(run.get('createdAt'), run.get('updatedAt'))}")
        for activity in run.get("activityRuns", []):
            reused = "  (reused)" if activity.get("reused") else ""
            self._line(f"  {activity['stepId']:<16} {activity['status']:<9} attempt {activity.get('attempt')}  "
                       f"{_seconds(activity.get('createdAt'), activity.get('updatedAt'))}{reused}")
        if outputs and run.get("status") == "completed":
            self._line("outputs:")
            for activity in run.get("activityRuns", []):
                self._line(f"  {activity['stepId']}: {json.dumps(activity.get('outputs'), ensure_ascii=False)}")


class _Later(httpx.TransportError):
    def __init__(self, seconds: float, message: str):
        super().__init__(message)
        self.seconds = seconds


def print_run(run: dict[str, Any], out: TextIO) -> None:
    print(f"run {run['id']}  {run['status']}  {run.get('workflowName') or ''} ({run['workflowId']})", file=out)
    print(f"  created {run['createdAt']}, updated {run['updatedAt']}"
          + (f", took {_seconds(run['createdAt'], run['updatedAt'])}" if run["status"] in TERMINAL else ""), file=out)
    for key in ("retryOf", "retriedBy", "cancelReason"):
        if run.get(key):
            print(f"  {key}: {run[key]}", file=out)
    for activity in run.get("activityRuns", []):
        reused = "  (reused)" if activity.get("reused") else ""
        print(f"  {activity['stepId']:<16} {activity['status']:<9} attempt {activity.get('attempt')}  "
              f"{_seconds(activity.get('createdAt'), activity.get('updatedAt'))}{reused}", file=out)
        if activity.get("outputs") is not None:
            print(f"    outputs: {json.dumps(activity['outputs'], ensure_ascii=False)}", file=out)
    if run.get("error"):
        print(f"  error: {run['error'].get('message')}"
              + (f" (step {run['error']['stepId']})" if run["error"].get("stepId") else ""), file=out)


def _seconds(start: str | None, end: str | None) -> str:
    try:
        delta = datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))
    except ValueError:
        return ""
    return f"{delta.total_seconds():.2f} s"
