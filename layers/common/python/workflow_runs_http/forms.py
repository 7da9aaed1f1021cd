"""The execute body and its Idempotency-Key header as FastAPI parameters; the parsing is
`execute_body`'s (framework-free, shared with the stream app)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header
from workflow_runs.service import IDEMPOTENCY_KEY_PATTERN

from .execute_body import EXECUTE_BODY, EXECUTE_FIELDS, IDEMPOTENCY_KEY_DESCRIPTION, parse_execute

IdempotencyKey = Annotated[
    str | None,
    Header(pattern=IDEMPOTENCY_KEY_PATTERN, description=IDEMPOTENCY_KEY_DESCRIPTION),
]

__all__ = ["EXECUTE_BODY", "EXECUTE_FIELDS", "IdempotencyKey", "parse_execute"]
