"""The bound on what one step may leave behind as its outputs.

A step's outputs live in its activity item, and a DynamoDB item holds at most 400 KB; the
bound leaves room for the item's other attributes. A step over it fails with a message that
says so, never with DynamoDB's own error text.
"""

from __future__ import annotations

import json
from typing import Any

MAX_OUTPUT_BYTES = 256 * 1024


def outputs_too_large(outputs: dict[str, Any]) -> str | None:
    """Why `outputs` cannot be stored, or None. Measured as the store writes them: compact
    JSON, UTF-8."""
    size = len(json.dumps(outputs, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size <= MAX_OUTPUT_BYTES:
        return None
    return f"outputs too large ({size} bytes; the limit is {MAX_OUTPUT_BYTES})"
