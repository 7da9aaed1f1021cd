"""`python -m bench [--quick] [--output docs/benchmarks.md] [--only NAME ...]`

Runs every section, each in its own interpreter, writes the report and prints it.
`--quick` (CI) runs every section with few repetitions and short windows: it proves the
benchmarks still run; its figures are not the ones to quote.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import SectionResult

ROOT = Path(__file__).resolve().parents[1]

# name → (module, title if it cannot even start)
SECTIONS = {
    "cold-start": ("bench.cold_start", "1. Cold init of the Lambda entry modules"),
    "request-overhead": ("bench.request_overhead", "2. Per-request overhead of the API handler"),
    "dynamodb": ("bench.dynamodb_cost", "3. DynamoDB requests and consumed capacity"),
    "transitions": ("bench.state_transitions", "4. State transitions per run"),
    "sse": ("bench.sse_latency", "5. SSE delivery latency on the local runtime"),
    "throughput": ("bench.throughput", "6. Throughput on the local runtime"),
    "scale": ("bench.scale", "7. Scale: write units per run, the tenant's ceiling, deep pages, cost"),
    "contention": ("bench.contention", "8. Contention: one tenant on a conflicting, throttling DynamoDB"),
    "execute-wait": ("bench.execute_wait", "9. The blocking execute: answer lag and reads while waiting"),
    "cost": ("bench.cost_model", "10. What a run costs: the complete model"),
    "contention-load": ("bench.contention_load", "11. Contention as a function of load (one workflow, one tenant)"),
}
SECTION_TIMEOUT = {False: 240, True: 80}  # seconds, per section (full, quick)
LONG_SECTIONS = {"scale": 3, "contention": 2, "contention-load": 3, "cold-start": 3, "cost": 3}  # sections allowed a multiple of that (scale writes
# 10,000 runs; cold-start also simulates Lambda inits and their first requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repetitions, short windows (CI)")
    parser.add_argument("--output", default="docs/benchmarks.md", help="where to write the report")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="run only these sections")
    parser.add_argument("--jobs", type=int, help="sections run at once (default: 1; --quick: 3). Above 1 the "
                        "sections disturb each other's timings: fine for proving they run, not for figures")
    parser.add_argument("--section", choices=sorted(SECTIONS), help=argparse.SUPPRESS)  # one, in this process
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.section:
        return _run_here(args.section, args.quick, Path(args.json_out))

    started = time.perf_counter()
    names = args.only or list(SECTIONS)
    jobs = args.jobs or (3 if args.quick else 1)

    def one(name: str, env: dict[str, str]) -> SectionResult:
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        result = _run_isolated(name, args.quick, env)
        verdicts = " ".join(f.verdict for f in result.figures if f.holds is not None)
        print(f"[bench] {name}: {result.seconds:.0f}s {result.error or verdicts}", file=sys.stderr, flush=True)
        return result

    with _shared_dynamodb_local(names) as env, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(lambda name: one(name, env), names))
    output = Path(args.output)
    results = with_kept_sections(results, output.with_suffix(".sections.json"), rerun=bool(args.only))
    report = render(results, quick=args.quick, elapsed=time.perf_counter() - started, jobs=jobs,
                    partial=names if args.only else None)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    figures_json(results, output.with_suffix(".json"))
    sys.stdout.write(report)
    return 0


def with_kept_sections(results: list[SectionResult], path: Path, *, rerun: bool) -> list[SectionResult]:
    """Every section's last result, kept next to the report: a run of some sections (`--only`)
    replaces theirs and keeps the others', so the report stays whole; a full run replaces all."""
    kept: dict[str, SectionResult] = {}
    if rerun and path.exists():
        kept = {d["key"]: SectionResult.from_json(d) for d in json.loads(path.read_text())}
    kept.update({r.key: r for r in results})
    merged = [kept[name] for name in SECTIONS if name in kept]
    path.write_text(json.dumps([r.to_json() for r in merged], indent=1, ensure_ascii=False) + "\n")
    return merged


def figures_json(results: list[SectionResult], path: Path) -> None:
    """Every figure of the report, for tools: {"figures": {name: {value, unit, target, holds}}}."""
    from . import figure_json

    existing: dict[str, Any] = {}
    for result in results:
        for figure in result.figures:
            key, data = figure_json(figure)
            existing[key] = data
    path.write_text(json.dumps({"figures": dict(sorted(existing.items()))}, indent=2, ensure_ascii=False) + "\n")


def _run_here(name: str, quick: bool, json_out: Path) -> int:
    module, title = SECTIONS[name]
    started = time.perf_counter()
    try:
        result = importlib.import_module(module).run(quick)
    except Exception:  # noqa: BLE001 - a broken section is reported in the document, not fatal
        result = SectionResult(name, title, error=traceback.format_exc(limit=6))
    result.seconds = time.perf_counter() - started
    json_out.write_text(json.dumps(result.to_json()))
    return 0


@contextlib.contextmanager
def _shared_dynamodb_local(names: list[str]) -> Iterator[dict[str, str]]:
    """One DynamoDB Local for the sections that need a bare one (the local-runtime sections
    start their own, as `workflow-runs dev` does): one JVM start and warm-up instead of two."""
    if not {"dynamodb", "transitions", "scale", "contention", "contention-load", "execute-wait", "cost"} & set(names):
        yield {}
        return
    from workflow_runs_dev import dynamodb_local

    db = dynamodb_local.start_dynamodb_local()
    try:
        yield {"BENCH_DYNAMODB_ENDPOINT": db.endpoint_url}
    finally:
        db.stop()


def _run_isolated(name: str, quick: bool, extra_env: dict[str, str]) -> SectionResult:
    _, title = SECTIONS[name]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        json_out = Path(work) / "result.json"
        command = [sys.executable, "-m", "bench", "--section", name, "--json-out", str(json_out)]
        if quick:
            command.append("--quick")
        env = {**os.environ, **extra_env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=SECTION_TIMEOUT[quick] * LONG_SECTIONS.get(name, 1), check=False)
        except subprocess.TimeoutExpired:
            return SectionResult(name, title, error="did not finish within the section's time limit",
                                 seconds=time.perf_counter() - started)
        if json_out.exists():
            result = SectionResult.from_json(json.loads(json_out.read_text()))
        else:
            result = SectionResult(name, title, error=f"exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    result.seconds = time.perf_counter() - started
    return result


# ---------------------------------------------------------------- the report


def machine() -> list[tuple[str, str]]:
    from workflow_runs_dev import dynamodb_local

    memory = "?"
    try:
        with open("/proc/meminfo") as meminfo:
            kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()
    return [
        ("CPUs (`nproc`)", str(os.cpu_count())),
        ("CPU", _cpu_model()),
        ("memory", memory),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", platform.python_version()),
        ("DynamoDB Local", f"{_dynamodb_local_version(dynamodb_local)} ({java[0] if java else 'no Java'})"),
        ("key packages", _versions("boto3", "fastapi", "mangum", "aws-lambda-powertools", "pydantic", "moto",
                                   "uvicorn", "sse-starlette", "httpx")),
    ]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _dynamodb_local_version(module) -> str:
    import zipfile

    jar = module.cache_dir() / "DynamoDBLocal.jar"
    try:
        with zipfile.ZipFile(jar) as archive:
            manifest = archive.read("META-INF/MANIFEST.MF").decode(errors="replace")
        for line in manifest.splitlines():
            if line.startswith("Implementation-Version:"):
                return line.split(":", 1)[1].strip()
    except (OSError, KeyError, zipfile.BadZipFile):
        pass
    return module.cache_dir().name.removeprefix("dynamodb-local-")


def _versions(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(found)


def render(results: list[SectionResult], *, quick: bool, elapsed: float, jobs: int = 1,
           partial: list[str] | None = None) -> str:
    from . import md_table

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`python -m bench{' --quick' if quick else ''}`) on {now}, "
        f"in {elapsed:.0f} s." + (" **Quick mode: few repetitions"
                                    + (f", {jobs} sections at once" if jobs > 1 else "")
                                    + "; these figures only prove the benchmarks run.**" if quick else ""),
        *([(f"This run re-ran only: {', '.join(partial)}; the other sections are kept from the runs before "
            "(docs/benchmarks.sections.json), each with its own section time.")] if partial else []),
        "",
        "Every figure is a ratio against a reference measured side by side in the same run, or a count;",
        "absolute times are for orientation only (this kind of machine is noisy). Each section runs in its",
        "own interpreter. Benchmarks are never test assertions: CI runs `python -m bench --quick` once",
        "(tests/bench/test_bench_quick.py) to prove they still run.",
        "",
        "## Summary",
        "",
    ]
    summary = []
    for result in results:
        if result.error:
            summary.append([result.title, "could not run", "—", "ERROR"])
        for figure in result.figures:
            if figure.holds is not None:
                summary.append([figure.name, figure.value, figure.target, figure.verdict])
    lines += [md_table(["figure", "value", "target", ""], summary), "", "## Machine", ""]
    lines += [md_table(["", ""], [[k, v] for k, v in machine()]), ""]
    for result in results:
        lines += [f"## {result.title}", ""]
        if result.method:
            lines += [f"*How:* {result.method}", ""]
        if result.error:
            lines += ["**This section could not run:**", "", "```", result.error.strip(), "```", ""]
        if result.figures:
            rows = [[f.name, f.value, f.target, f.verdict] + ([f.note] if any(x.note for x in result.figures) else [])
                    for f in result.figures]
            header = ["figure", "value", "target", ""] + (["note"] if any(f.note for f in result.figures) else [])
            lines += [md_table(header, rows), ""]
        for table in result.tables:
            lines += [table, ""]
        for note in result.notes:
            lines += [f"- {note}"]
        if result.notes:
            lines.append("")
        lines += [f"*Section time: {result.seconds:.0f} s.*", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
