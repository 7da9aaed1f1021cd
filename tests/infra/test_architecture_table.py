"""docs/architecture.md's table of functions is the synthesized template's: every Lambda
in the template has one row, every row one Lambda, and each row's module is where its
handler lives."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

from tests.infra.conftest import REPO_ROOT

ROW = re.compile(r"^\| `(?P<lambda>\w+)` \| `(?P<module>[^`]+)`(?P<rest>[^|]*)\| `(?P<handler>[^`]+)` \|$")


def table() -> list[dict[str, str]]:
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## The functions", 1)[1].split("\n## ", 1)[0]
    rows = [m.groupdict() for line in section.splitlines() if (m := ROW.match(line.strip()))]
    assert rows, "no table rows under '## The functions'"
    return rows


def test_the_table_names_each_function_of_the_template_once(dev):
    functions = {re.sub(r"[0-9A-F]{8}$", "", logical): resource["Properties"]["Handler"]
                 for logical, resource in dev.resources("AWS::Lambda::Function").items()}
    assert {row["lambda"]: row["handler"] for row in table()} == functions


def test_each_module_is_where_its_handler_lives():
    for row in table():
        module = REPO_ROOT / row["module"]
        assert module.is_file(), row
        if row["handler"].endswith(".sh"):
            # a script handler (the Lambda Web Adapter runs it): the app it starts is named
            factory = re.search(r"`([\w.]+):(\w+)`", row["rest"])
            assert factory is not None and Path(row["module"]).name == row["handler"], row
            assert f"{factory[1]}:{factory[2]}" in module.read_text(), row
            assert importlib.util.find_spec(factory[1]) is not None, row
            continue
        dotted, _, attribute = row["handler"].rpartition(".")
        spec = importlib.util.find_spec(dotted)
        assert spec is not None and spec.origin is not None, row
        assert Path(spec.origin).resolve() == module.resolve(), row
        # the handler may be a def or built by the entry helper (`handler = entry.handler`):
        # what Lambda needs is a callable of that name once the module is imported
        assert callable(getattr(importlib.import_module(dotted), attribute, None)), row
