"""How many times `Any` is written in the code that ships (layers/, functions/, local/), for
the typing goal of issue 27 (halve it): `python -m scripts.any_count` prints the total and
the ten files with most. Counted as Python tokens (the name `Any`), so a comment or a string
that says Any is not counted, and `typing.Any` is."""

from __future__ import annotations

import io
import sys
import tokenize
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("layers", "functions", "local")


def any_in(source: str) -> int:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return sum(1 for t in tokens if t.type == tokenize.NAME and t.string == "Any")


def any_count(root: Path = ROOT, folders: tuple[str, ...] = SHIPPED) -> Counter[str]:
    counts: Counter[str] = Counter()
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            found = any_in(path.read_text())
            if found:
                counts[str(path.relative_to(root))] = found
    return counts


def main() -> int:
    counts = any_count()
    print(f"any_count {sum(counts.values())}")
    for path, found in counts.most_common(10):
        print(f"{found:5d}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
