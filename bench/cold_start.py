"""1. Cold init: each Lambda entry module imported in a fresh interpreter, against a fresh
`import boto3` measured in the same loop (the order shuffled every round, so drift and
noise hit the reference and the subjects alike). Ratio of medians."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

from . import Figure, SectionResult, md_table, median, ms

REFERENCE = "boto3"


@dataclass(frozen=True)
class Subject:
    label: str
    module: str
    target: float | None  # ratio to `import boto3`
    then: str = ""  # statements run after the import (the first invocation's setup)
    key: str | None = None  # docs/benchmarks.json's name for the figure (else slugged from its label)
    env: dict[str, str] | None = None  # set for the child: e.g. Lambda's, so the import is the init phase


SUBJECTS = [
    Subject("api", "workflow_runs_api.handler", 2.0),
    # What a cold stream instance runs before /health answers: the app built, uvicorn loaded.
    Subject("stream", "workflow_runs_stream.app", 1.3,
            "workflow_runs_stream.app.create_app(); import uvicorn", key="cold_init_stream"),
    Subject("step runner", "workflow_runs_step_runner.handler", 1.3),
    Subject("projector", "workflow_runs_stream.projector", 1.3),
]
# Not targets: what the entry modules defer to their first invocation (no I/O is done:
# building the app, the store and its boto3 client), so the report shows where it went.
FIRST_INVOCATION = [
    Subject("api + first-invocation setup", "workflow_runs_api.handler", None,
            "workflow_runs_api.handler._adapter()"),
    Subject("stream + first request's imports", "workflow_runs_stream.app", None,
            "workflow_runs_stream.app.create_app(); import uvicorn, workflow_runs.service, workflow_runs.store, "
            "workflow_runs_stream.telemetry, aws_lambda_powertools.logging, "
            "aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch"),
    Subject("step runner + first-invocation setup", "workflow_runs_step_runner.handler", None,
            "workflow_runs_step_runner.handler.collaborators(); import workflow_runs_step_runner.runner, "
            "workflow_runs_step_runner.steps.registry"),
    Subject("projector + first-invocation setup", "workflow_runs_stream.projector", None,
            "workflow_runs_stream.projector._default_store(); "
            "import aws_lambda_powertools.utilities.batch"),
]

# The init phase in Lambda (no target; reported): the entry module imported where Lambda's
# runtime sets AWS_LAMBDA_FUNCTION_NAME and AWS_LAMBDA_INITIALIZATION_TYPE, so it does its
# heavy work then (imports, app, clients, the priming pass; no I/O). SnapStart snapshots
# after it: a restored environment does not pay it.
LAMBDA_INIT_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "EXPRESS_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:bench-express",
}
LAMBDA_INIT = [
    Subject("api: Lambda init phase", "workflow_runs_api.handler", None, env=LAMBDA_INIT_ENV),
    Subject("step runner: Lambda init phase", "workflow_runs_step_runner.handler", None, env=LAMBDA_INIT_ENV),
    Subject("projector: Lambda init phase", "workflow_runs_stream.projector", None, env=LAMBDA_INIT_ENV),
    Subject("reconciler: Lambda init phase", "workflow_runs_step_runner.reconciler", None, env=LAMBDA_INIT_ENV),
]
INIT_KEYS = {"api: Lambda init phase": "lambda_init_api_vs_boto3",
             "step runner: Lambda init phase": "lambda_init_step_runner_vs_boto3",
             "projector: Lambda init phase": "lambda_init_projector_vs_boto3",
             "reconciler: Lambda init phase": "lambda_init_reconciler_vs_boto3"}

# Floors (no target): what a FastAPI app cannot go below, and the same without FastAPI.
FLOORS = [
    Subject("floor: `import fastapi` (any FastAPI app)", "fastapi", None),
    Subject("floor: Starlette + sse-starlette, no FastAPI", "starlette.applications, sse_starlette", None),
    Subject("floor: `import jwt` (PyJWT + cryptography)", "jwt", None),
]

# What Lambda's environment would hold; no request is made, the values only let the
# factories build (settings, boto3 clients) offline.
CHILD_ENV = {
    "RUNS_TABLE": "bench-runs",
    "EVENTS_TABLE": "bench-events",
    "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:bench",
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(CHILD_ENV)
    env.update(extra or {})
    return env


def _code(module: str, then: str = "") -> str:
    body = f"import {module}" + (f"; {then}" if then else "")
    return f"import time; t=time.perf_counter(); {body}; print(time.perf_counter()-t)"


def time_import(module: str, then: str = "", env: dict[str, str] | None = None) -> float:
    out = subprocess.run([sys.executable, "-c", _code(module, then)], capture_output=True, text=True,
                         env=_env(env), timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"importing {module} failed: {out.stderr.strip()[-800:]}")
    return float(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- -X importtime


@dataclass
class ImportLine:
    self_us: int
    cumulative_us: int
    depth: int
    name: str


def import_tree(module: str, then: str = "") -> list[ImportLine]:
    """The imports `import module` (and `then`) add to a bare interpreter's start (site,
    encodings and the editable-install finder are left out: every command pays them)."""
    startup = {line.name for line in _importtime("pass")}
    code = f"import {module}" + (f"; {then}" if then else "")
    return [line for line in _importtime(code) if line.name not in startup]


def _importtime(code: str) -> list[ImportLine]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                         text=True, env=_env(), timeout=60, check=False)
    lines = []
    for raw in out.stderr.splitlines():
        if not raw.startswith("import time:") or "self [us]" in raw:
            continue
        _, self_part, cum_part, name_part = (raw.split(":", 1)[0], *raw.split(":", 1)[1].split("|"))
        name = name_part.rstrip()
        depth = (len(name) - len(name.lstrip(" "))) // 2
        lines.append(ImportLine(int(self_part), int(cum_part), depth, name.strip()))
    return lines


def by_package(lines: list[ImportLine], stdlib: frozenset[str]) -> dict[str, float]:
    """Self time summed per top-level package (exclusive: no double counting)."""
    totals: dict[str, float] = defaultdict(float)
    for line in lines:
        root = line.name.split(".")[0]
        totals["(stdlib)" if root in stdlib else root] += line.self_us / 1e6
    return dict(totals)


def chain(lines: list[ImportLine], package: str) -> str:
    """Who first imported `package`: its import chain up to the entry module, one name per
    package on the way (the outermost module of each)."""
    for index, line in enumerate(lines):
        if line.name.split(".")[0] != package:
            continue
        # importtime prints children before their parent: the parent is the next line up a level.
        ancestors, depth = [], line.depth
        for later in lines[index + 1:]:
            if later.depth < depth:
                depth = later.depth
                ancestors.append(later.name)
        groups: list[str] = []
        for name in ancestors:
            root = name.split(".")[0]
            if root == package:
                continue
            if groups and groups[-1].split(".")[0] == root and not root.startswith("workflow_runs"):
                groups[-1] = name  # keep the outermost module of this package
            else:
                groups.append(name)
        return " ← ".join([package, *groups[:5]])
    return package


def run(quick: bool) -> SectionResult:
    rounds = 1 if quick else 15
    # Quick mode (CI) keeps the targets and drops the informational rows and breakdowns.
    subjects = SUBJECTS + LAMBDA_INIT if quick else SUBJECTS + LAMBDA_INIT + FIRST_INVOCATION + FLOORS
    result = SectionResult(
        "cold-start",
        "1. Cold init of the Lambda entry modules",
        method=(
            f"Each entry module is imported in a fresh interpreter (`python -c \"t=perf_counter(); import M; "
            f"print(perf_counter()-t)\"`, bytecode cached, the interpreter's own start excluded) and so is "
            f"`import boto3`, the reference, in the same loop: {rounds} rounds, the order of the "
            f"{len(subjects) + 1} commands shuffled every round. Figure: median(module) / median(boto3). "
            "The *first-invocation* rows (no target) add what each entry point defers to its first "
            "invocation (building the app, settings, the store and its boto3 client; no I/O); the *floor* rows "
            "show what some dependencies cost by themselves."
        ),
    )
    for subject in subjects:  # warm the bytecode caches and the page cache
        time_import(subject.module, subject.then, subject.env)
    time_import(REFERENCE)
    samples: dict[str, list[float]] = defaultdict(list)
    rng = random.Random(8)
    for _ in range(rounds):
        order = [None, *subjects]
        rng.shuffle(order)
        for subject in order:
            if subject is None:
                samples[REFERENCE].append(time_import(REFERENCE))
            else:
                samples[subject.label].append(time_import(subject.module, subject.then, subject.env))
    reference = median(samples[REFERENCE])
    rows = [["`import boto3` (reference)", ms(reference), "1.00×", "—", "—"]]
    missed: list[Subject] = []
    for subject in subjects:
        value = median(samples[subject.label])
        ratio = value / reference
        holds = None if subject.target is None else ratio <= subject.target
        statement = f"`import {subject.module}`" + (f" + `{subject.then}`" if subject.then else "") + (
            " (in Lambda's environment: the init phase)" if subject.env else "")
        label = subject.label if subject.label.startswith("floor") else f"{subject.label}: {statement}"
        rows.append([label, ms(value), f"{ratio:.2f}×",
                     f"≤ {subject.target}×" if subject.target else "—",
                     {True: "holds", False: "MISSED", None: "—"}[holds]])
        if subject.target is not None:
            result.add(Figure(f"cold init, {subject.label} (`{subject.module}`) / `import boto3`",
                              f"{ratio:.2f}× ({ms(value)} vs {ms(reference)})", f"≤ {subject.target}×", holds,
                              key=subject.key, number=round(ratio, 3) if subject.key else None,
                              unit="ratio" if subject.key else ""))
            if not holds:
                missed.append(subject)
        elif subject.label in INIT_KEYS:
            result.add(Figure(f"Lambda init phase, {subject.label.split(':')[0]} (`{subject.module}`) / `import boto3`",
                              f"{ratio:.2f}× ({ms(value)} vs {ms(reference)})", key=INIT_KEYS[subject.label],
                              number=round(ratio, 3), unit="×",
                              note="reported; SnapStart snapshots after it, so a restored environment skips it"))
    result.tables.append(md_table(["import", "median", "÷ boto3", "target", ""], rows))

    stdlib = frozenset(sys.stdlib_module_names)
    breakdown_rows = []
    for subject in [] if quick else SUBJECTS + FIRST_INVOCATION:
        lines = import_tree(subject.module, subject.then)
        packages = sorted(by_package(lines, stdlib).items(), key=lambda kv: -kv[1])[:6]
        breakdown_rows.append([subject.label, ", ".join(f"{name} {s * 1000:.0f} ms" for name, s in packages)])
    result.tables.append(
        "Where the import time goes (`-X importtime`, self time summed per top-level package; "
        "importtime itself inflates the numbers, compare them with each other only):\n\n"
        + md_table(["entry", "largest packages"], breakdown_rows)
    )
    floors = {f.module: median(samples[f.label]) / reference for f in FLOORS if samples.get(f.label)}
    for entry, deferred in zip(SUBJECTS, FIRST_INVOCATION):
        if quick or not samples.get(deferred.label) or entry.target is None:
            continue
        ratio = median(samples[deferred.label]) / reference
        if ratio > entry.target and median(samples[entry.label]) / reference <= entry.target:
            result.notes.append(
                f"**{entry.label}**: the entry import holds because, outside Lambda, `{entry.module}` defers its "
                f"work to the first invocation; import + that setup measures {ratio:.2f}× boto3 (boto3 itself "
                "included; see the rows above and the breakdown). In Lambda the init phase does it (the *Lambda init "
                "phase* rows), so with SnapStart a restored environment's first request does not pay it.")
    first_request(result, rounds=1 if quick else 5, quick=quick)
    for subject in missed:
        lines = import_tree(subject.module, subject.then)
        packages = sorted(by_package(lines, stdlib).items(), key=lambda kv: -kv[1])
        heavy = [name for name, _ in packages if not name.startswith("workflow_runs") and name != "(stdlib)"][:5]
        note = (f"**{subject.label}** misses its target. Heaviest imports and who pulls them in: "
                + "; ".join(f"`{chain(lines, name)}`" for name in heavy) + ".")
        names = {line.name for line in lines}
        subject_ratio = median(samples[subject.label]) / reference
        if "fastapi" in names and "fastapi" in floors:
            fastapi_floor = floors["fastapi"]
            note += f" `import fastapi` by itself measures {fastapi_floor:.2f}× `import boto3` on this machine"
            note += (f", so a FastAPI app cannot meet ≤ {subject.target}× here whatever it defers"
                     if fastapi_floor >= subject.target else
                     f", which leaves {subject.target - fastapi_floor:.2f}× for everything else; the app adds "
                     f"{subject_ratio - fastapi_floor:.2f}×")
            starlette = floors.get("starlette.applications, sse_starlette")
            note += (f" (Starlette + sse-starlette without FastAPI: {starlette:.2f}×)." if starlette else ".")
        if "jwt" in names and "workflow_runs.auth" in names:
            jwt_floor = floors.get("jwt")
            note += (
                " What the app adds that it could defer: PyJWT and `cryptography`"
                + (f" ({jwt_floor:.2f}× boto3 by themselves; without them ≈ {subject_ratio - jwt_floor:.2f}×, "
                   "an estimate)" if jwt_floor else "")
                + ", imported at module level by layers/common/python/workflow_runs/auth.py (`import jwt` and "
                "`from jwt import PyJWK, PyJWKClient`, lines 20–21), which "
                "layers/common/python/workflow_runs_http/security.py imports. "
                "Moving those two imports into the functions that use them (`JwtVerifier`, `get_verifier`; "
                "`PyJWK` is only an annotation there) takes them out of the import; a bearer-token request "
                "still pays them on the first call, a private-API call never does."
            )
        result.notes.append(note)
    return result


# ---------------------------------------------------------------- first request after init

FIRST_REQUEST = {"api": "first_request_after_init_api", "step-runner": "first_request_after_init_step_runner",
                 "projector": "first_request_after_init_projector"}
FIRST_REQUEST_TARGET = 1.3
CONTROL = "boto3"


def time_first_request(subject: str, endpoint: str, warm: int = 30, transport: str = "dynamodb-local",
                       busy_seconds: float = 0.0, answers: str | None = None) -> dict:
    """One simulated execution environment (bench/first_request.py): init as in Lambda, the
    SnapStart hooks, the first request, then warm ones."""
    env = _env({"DYNAMODB_ENDPOINT_URL": endpoint, "BENCH_WARM_REQUESTS": str(warm)})
    command = [sys.executable, "-m", "bench.first_request", subject, transport, "--busy", str(busy_seconds)]
    out = subprocess.run([*command, *(["--answers", answers] if answers else [])],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    line = next((line for line in out.stdout.splitlines() if line.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"first request of {subject} ({transport}) failed: {out.stderr.strip()[-800:]}")
    import json

    return json.loads(line[len("RESULT "):])


def first_request(result: SectionResult, rounds: int, quick: bool = False) -> None:
    from workflow_runs_dev import dynamodb_local

    db = dynamodb_local.start_dynamodb_local()
    try:
        _first_request(result, rounds, db.endpoint_url, warm=10 if quick else 20, warm_pass=not quick)
    finally:
        db.stop()


def _first_request(result: SectionResult, rounds: int, endpoint: str, *, warm: int, warm_pass: bool) -> None:
    """Per round: each function over DynamoDB Local (shuffled; each saves the answers its
    server warm-up got), then each in-process replaying them (shuffled), then the control (a
    bare client with nothing left to warm, kept busy as long as the api's init takes)."""
    import tempfile

    samples: dict[tuple[str, str], list[dict]] = defaultdict(list)
    rng = random.Random(16)
    if warm_pass:  # bytecode and page caches warm, DynamoDB Local's JIT too
        time_first_request("step-runner", endpoint, warm)
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            for transport in ("dynamodb-local", "in-process"):  # the second replays what the first recorded
                order = list(FIRST_REQUEST)
                rng.shuffle(order)
                for subject in order:
                    answers = os.path.join(folder, f"{subject}.json")
                    samples[subject, transport].append(time_first_request(subject, endpoint, warm, transport,
                                                                          answers=answers))
            busy = median([sample["init"] for sample in samples["api", "dynamodb-local"]])
            samples[CONTROL, "dynamodb-local"].append(time_first_request(CONTROL, endpoint, warm, busy_seconds=busy))
            samples[CONTROL, "in-process"].append(time_first_request(CONTROL, endpoint, warm, "in-process", busy,
                                                                     answers=os.path.join(folder, "api.json")))

    def ratios(subject: str, transport: str) -> list[float]:
        return [sample["first"] / median(sample["warm"]) for sample in samples[subject, transport]]

    def times(subject: str, transport: str) -> tuple[float, float]:
        taken = samples[subject, transport]
        return median([s["first"] for s in taken]), median([median(s["warm"]) for s in taken])

    rows = []
    for subject, key in FIRST_REQUEST.items():
        for transport, suffix, what in (("dynamodb-local", "", "over DynamoDB Local"),
                                        ("in-process", "_in_process", "its own time (DynamoDB answered in-process)")):
            ratio = median(ratios(subject, transport))
            first, warm_time = times(subject, transport)
            result.add(Figure(f"first request after the init phase / a warm request, {subject}, {what}",
                              f"{ratio:.2f}× ({ms(first)} vs {ms(warm_time)})", f"≤ {FIRST_REQUEST_TARGET}×",
                              ratio <= FIRST_REQUEST_TARGET, key=key + suffix, number=round(ratio, 3), unit="×"))
            connect = median([s["connect"] for s in samples[subject, transport]])
            rows.append([subject, transport, ms(connect) if transport == "dynamodb-local" else "—", ms(first),
                         ms(warm_time), ", ".join(f"{r:.2f}" for r in sorted(ratios(subject, transport)))])
    for transport, suffix, what, note in (
            ("dynamodb-local", "", "over DynamoDB Local",
             ("what this machine and DynamoDB Local charge a first request with nothing left to warm; "
              "it swings from run to run, see its samples")),
            ("in-process", "_in_process", "answered in-process",
             "what this machine charges a code path not run for as long as an init takes, no server in it")):
        control = median(ratios(CONTROL, transport))
        first, warm_time = times(CONTROL, transport)
        result.add(Figure(f"control: a bare boto3 client with nothing left to warm, first request / a warm one, {what}",
                          f"{control:.2f}× ({ms(first)} vs {ms(warm_time)})", key="first_request_control_boto3" + suffix,
                          number=round(control, 3), unit="×", note=note))
        connect = median([s["connect"] for s in samples[CONTROL, transport]])
        rows.append(["control: bare boto3 Query", transport, ms(connect) if transport == "dynamodb-local" else "—",
                     ms(first), ms(warm_time), ", ".join(f"{r:.2f}" for r in sorted(ratios(CONTROL, transport)))])
    result.tables.append(
        "First request after the init phase (`python -m bench.first_request SUBJECT TRANSPORT`, one fresh "
        f"interpreter per sample, {rounds} samples each, interleaved): the environment set as Lambda sets it for "
        "a SnapStart function (`AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`, "
        "credentials from a container credentials endpoint served by the harness), so importing the entry module "
        "is the init phase; the SnapStart hooks run (before the snapshot, after the restore: connections closed, "
        "random reseeded, the clients kept); then the first request and "
        f"{warm} warm ones, timed one by one, each event made beforehand. Each run is of a workflow of its own, "
        "so what a function caches per workflow version is filled by every request alike. Two transports: over "
        "a DynamoDB Local over HTTP (the connection opened apart, through the function's own client: no "
        "connection survives a snapshot; as many requests of the same kind sent first from another "
        "interpreter, so DynamoDB Local's JVM has compiled those paths), and in-process (nothing seeded, nothing "
        "sent: every DynamoDB call answered with the answer DynamoDB Local gave that other interpreter for the "
        "same request on the same run, recorded in the round's sample over DynamoDB Local; only the function's "
        "own code is timed). The control is a bare boto3 client already warmed by real "
        "Queries, then kept busy as long as the api's init took, then timed the same way: what this machine "
        "and DynamoDB Local charge a first request with nothing left to warm; in-process, the same client "
        "answered with the api's recorded Queries: what this machine charges a code path it has not run for "
        "that long, with no server in it. "
        "Figure: median over samples of first / median(warm); `first_request_after_init_<function>` is the one "
        "over DynamoDB Local, `…_in_process` the function's own time. Read the first against the control: a "
        "first request with nothing left to warm pays that much here, which no init can take.\n\n"
        + md_table(["function", "transport", "opening the connection (apart)", "first (median)", "warm (median)",
                    "first ÷ warm, each sample"], rows)
    )


if __name__ == "__main__":  # pragma: no cover - handy while tuning one module
    started = time.perf_counter()
    print(run(quick="--quick" in sys.argv))
    print(f"{time.perf_counter() - started:.1f}s")
