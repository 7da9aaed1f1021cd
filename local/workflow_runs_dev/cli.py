"""`workflow-runs dev`: run the whole API on this machine, with no AWS account and no Docker."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

DESCRIPTION = """\
Serves every route of the Workflow Runs API on one machine:
  public listener    http://HOST:PORT                 (JWT callers, as through the public API)
  internal listener  http://127.0.0.1:INTERNAL_PORT   (trusted callers, as through the private API;
                                                       name the tenant in X-Tenant-Id; always on
                                                       loopback, whatever --host says)
with an embedded DynamoDB (DynamoDB Local when Java 17+ is present, moto's server
otherwise) or an already running one (--dynamodb-endpoint, tables created when missing),
the local orchestrator running the real step runner, and a stream poller feeding the real
projector for SSE. Without JWKS_URL it makes its own signing key, serves its JWKS at
/.well-known/jwks.json and prints a dev-only token for tenant 'dev'.

Settings are environment variables (JWKS_URL, JWT_ISSUER, JWT_AUDIENCE, JWT_TENANT_CLAIM,
JWT_ALGORITHMS, EXECUTE_WAIT_SECONDS, CORS_ALLOW_ORIGINS, LLM_PROVIDER, HTTP_STEP_ALLOWED_HOSTS, ...):
see docs/api.md. Ctrl-C stops every process it started.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workflow-runs", description="Workflow Runs API tools: a local server (dev) and a client of the API.")
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="run the API on this machine", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    dev.add_argument("--host", default="127.0.0.1",
                     help="address of the public listener; the internal one is always 127.0.0.1 "
                          "(default: %(default)s)")
    dev.add_argument("--port", type=int, default=8000, help="public listener port (default: %(default)s)")
    dev.add_argument("--internal-port", type=int, default=8001,
                     help="internal listener port, the private API's stand-in (default: %(default)s)")
    dev.add_argument("--dynamodb", choices=("auto", "local", "moto"), default="auto",
                     help="embedded DynamoDB: DynamoDB Local (Java 17+), moto, or auto = Local when Java 17+ "
                          "is here (default: %(default)s)")
    dev.add_argument("--dynamodb-endpoint", metavar="URL",
                     help="use an already running DynamoDB at URL (a shared DynamoDB Local, or anything speaking "
                          "its protocol) instead of starting one; its tables (RUNS_TABLE, EVENTS_TABLE) are "
                          "created when missing and reused when present")
    dev.add_argument("--inject-faults", metavar="SPEC", type=_fault_spec,
                     help="make every AWS call unkind, as AWS is under load: e.g. conflict=0.2,throttle=0.1[,seed=7] "
                          "cancels 20%% of transactions with TransactionConflict and throttles 10%% of requests; "
                          "error=0.05 answers 5xx, surface=0.02 fails calls past botocore's retries, "
                          "storm=5[,storm_at=S,storm_every=T] fails every call for 5 s, then calm "
                          "(for showing retries and 503 Unavailable; never for real use)")
    dev.add_argument("--examples", type=Path, default=Path("examples"),
                     help="folder of workflow YAML files loaded for tenant 'dev' (default: %(default)s)")
    dev.add_argument("--no-examples", action="store_true", help="start with no workflows")
    dev.add_argument("--cors-origin", metavar="ORIGIN", action="append", default=[], type=_origin,
                     help="a browser origin allowed to call the API (CORS), e.g. http://localhost:5173; "
                          "repeatable; added to CORS_ALLOW_ORIGINS")
    dev.set_defaults(handler=None, usage_parser=dev)
    from .client import add_commands  # httpx only, still instant

    add_commands(commands)
    return parser


def _fault_spec(spec: str) -> str:
    from .faults import parse_spec  # keep --help instant

    try:
        parse_spec(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def _origin(value: str) -> str:
    from workflow_runs.origins import origin_problem  # import-light

    problem = origin_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand that was given them, with its own usage (exit 2)
        (getattr(args, "usage_parser", None) or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.handler is not None:  # a client command (client.py): run, runs, approve, reject
        from .client import run_command

        return run_command(args)
    from .faults import FaultInjector  # keep --help instant
    from .runtime import LocalRuntime

    runtime = LocalRuntime(
        host=args.host,
        port=args.port,
        internal_port=args.internal_port,
        dynamodb=args.dynamodb,
        dynamodb_endpoint=args.dynamodb_endpoint,
        faults=FaultInjector.from_spec(args.inject_faults) if args.inject_faults else None,
        examples_dir=None if args.no_examples else args.examples,
        cors_origins=tuple(args.cors_origin),
    )
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        runtime.start()
    except Exception as exc:  # noqa: BLE001 - a start failure is reported in one line
        print(f"workflow-runs dev could not start: {exc}", file=sys.stderr)
        return 1
    print(banner(runtime), flush=True)
    try:
        stopping.wait()
    finally:
        print("stopping…", flush=True)
        runtime.stop()
    return 0


QUIET_STEP_TYPES = frozenset({"transform", "llm"})


def banner(runtime) -> str:
    from .runtime import DEV_TENANT  # loaded already: the runtime is running

    tables = ", ".join(f"{name} ({'created' if name in runtime.tables_created else 'reused'})"
                       for name in (runtime.settings.runs_table, runtime.settings.events_table))
    db = {"dynamodb-local": "DynamoDB Local (AWS's implementation, in memory)",
          "moto": "moto's DynamoDB server (Java 17+ not found)",
          "external": f"the DynamoDB at {runtime.dynamodb_url} (already running; not stopped on exit)"}[runtime.db_kind]
    origins = getattr(runtime.settings, "cors_allow_origins", ())
    lines = [
        "Workflow Runs API — local runtime",
        f"  public listener:   {runtime.public_url}",
        (f"  internal listener: {runtime.internal_url}   (trusted; send X-Tenant-Id; loopback only, "
         "whatever --host says)"),
        f"  database:          {db}",
        *([f"  CORS origins:      {', '.join(origins)}"] if origins else []),
        f"  tables:            {tables}",
        (f"  orchestrator:      local (same semantics as the state machines; "
         f"ORCHESTRATION={runtime.settings.orchestration})" if runtime.settings else
         "  orchestrator:      local (same semantics as the state machines)"),
    ]
    if runtime.faults is not None:
        lines += [
            "",
            "!! FAULTS INJECTED into every AWS call this server makes (DynamoDB, its stream, Step Functions, the model):",
            f"!!   {runtime.faults.describe()}.",
            "!!   Expect retries, 503 Unavailable and slow answers: this server is unreliable on purpose.",
        ]
    if runtime.loaded_examples:
        lines.append("  workflows for tenant 'dev':")
        lines += [f"    {e.workflow.id}  {e.workflow.name}  ({e.file})" for e in runtime.loaded_examples]
    base = f"{runtime.public_url}/api/v1/workflow-runs"
    if runtime.token:
        lines += [
            "",
            "DEV-ONLY token for tenant 'dev' (signed by a key made at start; never valid anywhere else):",
            f"export TOKEN={runtime.token}",
            "",
            "Try:",
            f'  curl -s -H "Authorization: Bearer $TOKEN" {base}',
        ]
    else:
        lines += ["", "JWKS_URL is set: use a token from your issuer.", "Try:",
                  f'  curl -s -H "Authorization: Bearer $TOKEN" {base}']
    lines.append(f'  curl -s -H "X-Tenant-Id: dev" {runtime.internal_url}/api/v1/workflow-runs')
    # The first run a newcomer starts should succeed: an example that needs no inputs and has
    # no step that fails on purpose, waits for a person or reaches the network.
    runnable = next((e for e in runtime.loaded_examples if not e.needs_inputs
                     and {s.type for s in e.workflow.steps} <= QUIET_STEP_TYPES), None)
    approval = next((e for e in runtime.loaded_examples
                     if any(s.type == "approval" for s in e.workflow.steps)), None)
    if runnable:
        lines.append(f'  curl -s -H "Authorization: Bearer $TOKEN" -F workflowId={runnable.workflow.id} '
                     f"-F 'inputs={{}}' {base}/execute")
        lines.append(f'  curl -sN -H "Authorization: Bearer $TOKEN" -F workflowId={runnable.workflow.id} '
                     f"-F 'inputs={{}}' {base}/execute/stream")
    lines += [
        "Watch runs live:",
        f"  viewer: {runtime.public_url}/viewer/   (paste the token)",
        f"          {runtime.internal_url}/viewer/#tenant={DEV_TENANT}   (internal listener: no token needed)",
        f"  CLI:    export WORKFLOW_RUNS_URL={runtime.public_url} WORKFLOW_RUNS_TOKEN=$TOKEN",
        "          bin/workflow-runs runs list   ·   bin/workflow-runs run <workflowId> --follow",
    ]
    if approval is not None:
        sample = " ".join(f"--input {i.name}=v2" for i in approval.workflow.inputs if i.required and i.default is None)
        lines.append(f"          bin/workflow-runs run {approval.workflow.id} {sample} --follow".replace("  ", " ")
                     + "   (waits for your Approve, in the viewer or with the command it prints)")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
