"""The count behind issue 27's typing goal: `Any` as written in code, not in words."""

from __future__ import annotations

from pathlib import Path

from scripts.any_count import any_count, any_in


def test_any_is_counted_as_code_not_as_words() -> None:
    source = ('from typing import Any\n'
              'import typing\n'
              'x: dict[str, Any] = {}  # Any in a comment is not counted\n'
              'y: typing.Any = "Any in a string is not"\n'
              'AnyThing = 1\n')
    assert any_in(source) == 3


def test_the_count_walks_the_shipped_folders_only(tmp_path: Path) -> None:
    (tmp_path / "layers" / "pkg").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    (tmp_path / "layers" / "pkg" / "a.py").write_text("from typing import Any\nv: Any = 1\n")
    (tmp_path / "layers" / "pkg" / "b.py").write_text("v = 1\n")
    (tmp_path / "tests" / "t.py").write_text("from typing import Any\n")

    counts = any_count(tmp_path, ("layers",))

    assert dict(counts) == {"layers/pkg/a.py": 2}
