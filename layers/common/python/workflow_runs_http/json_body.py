"""Strict JSON for the bodies FastAPI parses itself (cancel, PUT workflow).

`StrictJsonRoute` applies `strict_json.loads_strict` before FastAPI reads a body: FastAPI
answers any failure while reading a body with a bare "There was an error parsing the body",
which would hide both the reason and a body over the size limit (a 413 from the limit
middleware).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from workflow_runs.errors import ValidationFailed

from .strict_json import MAX_INTEGER_DIGITS, MAX_JSON_DEPTH, InvalidJson, is_json_content_type, loads_strict

__all__ = ["MAX_INTEGER_DIGITS", "MAX_JSON_DEPTH", "InvalidJson", "StrictJsonRoute", "is_json_content_type",
           "loads_strict"]


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is read and checked before FastAPI parses it (module doc)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def checked(request: Request) -> Response:
            body = await request.body()  # over the limit: the limit middleware answers 413
            if body and is_json_content_type(request.headers.get("content-type")):
                try:
                    loads_strict(body)
                except InvalidJson as exc:
                    raise ValidationFailed(f"body: {exc}") from None
            return await handler(request)  # the body is cached on the request: read once

        return checked
