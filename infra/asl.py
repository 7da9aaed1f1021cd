"""`python -m infra.asl`: write the retry rules (`workflow_runs.retry_rules`) into
infra/state_machine.asl.json, leaving the rest of the hand-written file as it is.

Only the fields of the retriers named in `ASL_RETRIERS` are rewritten, in place, line by
line; tests/infra/test_asl_retries.py fails while the file differs from what this writes.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from workflow_runs.retry_rules import ASL_RETRIERS

ASL_FILE = Path(__file__).resolve().parent / "state_machine.asl.json"
_STATE = re.compile(r'^    "(?P<name>\w+)": \{$')  # a state of the top-level "States"
_ERRORS = re.compile(r'^\s*"ErrorEquals": (?P<errors>\[.*\]),?$')
_FIELD = re.compile(r'^(?P<indent>\s*)"(?P<field>IntervalSeconds|BackoffRate|MaxDelaySeconds|MaxAttempts|'
                    r'JitterStrategy)": (?P<value>[^,]+)(?P<comma>,?)$')


def render(text: str) -> str:
    state: str | None = None
    fields: dict[str, object] | None = None
    seen: set[tuple[str, str]] = set()
    out = []
    for line in text.splitlines():
        if (match := _STATE.match(line)) is not None:
            state = match["name"]
        elif (match := _ERRORS.match(line)) is not None and state is not None:
            errors = json.loads(match["errors"])
            policy = ASL_RETRIERS.get((state, errors[0]))
            fields = policy.asl() if policy is not None else None
            if policy is not None:
                if tuple(errors) != policy.errors:
                    raise ValueError(f"{state}: a retrier for {errors}, the rule is for {list(policy.errors)}")
                seen.add((state, errors[0]))
        elif fields is not None and (match := _FIELD.match(line)) is not None:
            line = f'{match["indent"]}"{match["field"]}": {json.dumps(fields[match["field"]])}{match["comma"]}'
        elif line.strip().startswith("}"):
            fields = None
        out.append(line)
    missing = set(ASL_RETRIERS) - seen
    if missing:
        raise ValueError(f"retriers not found in the ASL: {sorted(missing)}")
    return "\n".join(out) + "\n"


def main() -> int:
    text = ASL_FILE.read_text()
    rendered = render(text)
    if rendered != text:
        ASL_FILE.write_text(rendered)
        print(f"updated {ASL_FILE.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
