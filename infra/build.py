"""Packaging without Docker: `make build` (python -m infra.build).

Lambda code ships from its source folders (functions/*, layers/common) as CDK assets; what
needs building is the third-party dependencies layer: wheels for the Lambda platform
(Linux, arm64, CPython 3.12), never compiled here, installed by pip with
`--platform … --only-binary=:all:` into build/deps/python.

The build is idempotent: it is skipped while build/deps carries the hash of the same lock
file, and a failed install never leaves a half-built layer behind.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

# No aws_cdk import here: the build must not pay for jsii.
REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK_FILE = REPO_ROOT / "requirements" / "runtime.lock"
DEPS_DIR = REPO_ROOT / "build" / "deps"
STAMP = ".lock-sha256"
PLATFORM = "manylinux2014_aarch64"
PYTHON_VERSION = "3.12"  # matches infra.constructs.functions.RUNTIME
STREAM_RUN_SCRIPT = REPO_ROOT / "functions" / "stream" / "run.sh"
# Not needed at run time: console scripts carry this machine's interpreter path.
PRUNE = ("bin",)


def pip_command(lock_file: Path, target: Path) -> list[str]:
    return [
        sys.executable, "-m", "pip", "install",
        "--quiet", "--disable-pip-version-check", "--no-compile",
        "--platform", PLATFORM,
        "--implementation", "cp",
        "--python-version", PYTHON_VERSION,
        "--only-binary=:all:",
        "--requirement", str(lock_file),
        "--target", str(target),
    ]  # fmt: skip


def lock_digest(lock_file: Path) -> str:
    return hashlib.sha256(lock_file.read_bytes()).hexdigest()


def is_current(deps_dir: Path, lock_file: Path) -> bool:
    stamp = deps_dir / STAMP
    return (deps_dir / "python").is_dir() and stamp.is_file() and stamp.read_text().strip() == lock_digest(lock_file)


def build_deps_layer(
    lock_file: Path = LOCK_FILE, deps_dir: Path = DEPS_DIR, *, force: bool = False, run=subprocess.run
) -> bool:
    """Install the locked wheels into deps_dir/python. False when it was already current."""
    if not force and is_current(deps_dir, lock_file):
        return False
    deps_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=deps_dir.parent, prefix=".deps-") as scratch:
        staged = Path(scratch) / "deps"
        run(pip_command(lock_file, staged / "python"), check=True)
        for name in PRUNE:
            shutil.rmtree(staged / "python" / name, ignore_errors=True)
        for cache in (staged / "python").rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
        (staged / STAMP).write_text(lock_digest(lock_file) + "\n")
        if deps_dir.exists():
            shutil.rmtree(deps_dir)
        staged.rename(deps_dir)
    return True


def make_executable(script: Path) -> bool:
    """The Lambda Web Adapter execs the handler script: it must keep its x bit in the zip."""
    if not script.is_file():
        return False
    mode = script.stat().st_mode
    script.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if build/deps is current")
    args = parser.parse_args(argv)
    built = build_deps_layer(force=args.force)
    print(f"dependencies layer {'built' if built else 'up to date'}: {DEPS_DIR.relative_to(REPO_ROOT)}/python")
    if not make_executable(STREAM_RUN_SCRIPT):
        print(
            f"warning: {STREAM_RUN_SCRIPT.relative_to(REPO_ROOT)} is missing (the stream function's handler)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
