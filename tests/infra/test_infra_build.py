"""`make build`: the dependencies layer is built for Lambda's platform, atomically, and
only when the lock file changed. pip itself is replaced by a fake installer."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from infra import build


class FakePip:
    """Stands in for `pip install --target`: writes a package, a console script and a cache."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], check: bool) -> None:
        self.commands.append(command)
        if self.fail:
            raise subprocess.CalledProcessError(1, command)
        target = Path(command[command.index("--target") + 1])
        (target / "pkg" / "__pycache__").mkdir(parents=True)
        (target / "pkg" / "__init__.py").write_text("VERSION = 1\n")
        (target / "pkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
        (target / "bin").mkdir()
        (target / "bin" / "tool").write_text("#!/machine/python\n")


@pytest.fixture
def lock(tmp_path) -> Path:
    path = tmp_path / "runtime.lock"
    path.write_text("pkg==1\n")
    return path


def test_pip_installs_only_arm64_cpython_312_wheels(lock, tmp_path):
    command = build.pip_command(lock, tmp_path / "t")
    joined = " ".join(command)
    assert "--platform manylinux2014_aarch64" in joined
    assert "--implementation cp" in joined
    assert "--python-version 3.12" in joined
    assert "--only-binary=:all:" in command


def test_build_installs_the_layer_under_python_without_caches_or_scripts(lock, tmp_path):
    deps = tmp_path / "build" / "deps"
    assert build.build_deps_layer(lock, deps, run=FakePip()) is True
    assert (deps / "python" / "pkg" / "__init__.py").is_file()
    assert not list(deps.rglob("__pycache__"))
    assert not (deps / "python" / "bin").exists()
    assert build.is_current(deps, lock)


def test_build_is_skipped_while_the_lock_is_unchanged_and_redone_when_it_changes(lock, tmp_path):
    deps = tmp_path / "build" / "deps"
    pip = FakePip()
    build.build_deps_layer(lock, deps, run=pip)
    assert build.build_deps_layer(lock, deps, run=pip) is False
    lock.write_text("pkg==2\n")
    assert build.build_deps_layer(lock, deps, run=pip) is True
    assert len(pip.commands) == 2


def test_a_failed_install_keeps_the_previous_layer(lock, tmp_path):
    deps = tmp_path / "build" / "deps"
    build.build_deps_layer(lock, deps, run=FakePip())
    lock.write_text("pkg==2\n")
    with pytest.raises(subprocess.CalledProcessError):
        build.build_deps_layer(lock, deps, run=FakePip(fail=True))
    assert (deps / "python" / "pkg" / "__init__.py").is_file()
    assert [p.name for p in deps.parent.iterdir()] == ["deps"]  # no scratch left behind


def test_the_stream_handler_script_is_made_executable(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/bash\nexec python -m uvicorn --port=$PORT app:app\n")
    script.chmod(0o644)
    assert build.make_executable(script) is True
    assert os.stat(script).st_mode & stat.S_IXUSR
    assert build.make_executable(tmp_path / "missing.sh") is False
