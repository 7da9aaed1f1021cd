"""Lambda entry point: Mangum adapts API Gateway REST proxy events to the FastAPI app."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from mangum import Mangum


@lru_cache(maxsize=1)
def _adapter() -> Mangum:
    from workflow_runs.settings import get_settings  # noqa: PLC0415

    from .app import create_app  # noqa: PLC0415

    settings = get_settings()
    return Mangum(create_app(settings=settings), lifespan="off", api_gateway_base_path="/")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _adapter()(event, context)
