"""One place that turns errors into the contract's uniform body:
`{"success": false, "error": "<Code>", "details": <string | list>}`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from workflow_runs.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)

logger = logging.getLogger("workflow_runs.http")
M = TypeVar("M", bound=BaseModel)

STATUS_OF: dict[type[DomainError], int] = {
    ValidationFailed: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Unavailable: 503,
}
_CODE_OF_HTTP = {400: "ValidationError", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                 405: "MethodNotAllowed", 409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType"}


def error_body(code: str, details: str | list[str]) -> dict:
    return {"success": False, "error": code, "details": details}


def error_response(status: int, code: str, details: str | list[str], headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, details), status_code=status, headers=headers)


def describe_validation(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    """FastAPI/pydantic errors as lines a user can act on: `<where>: <what>`."""
    lines = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header"))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return lines


def parse_query(model: type[M], **values: Any) -> M:
    """A query model built in a route: its rule violations are a 400 like any other."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation(list(exc.errors()))) from None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        status = STATUS_OF.get(type(exc), 500)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, Unavailable):
            headers = {"Retry-After": str(exc.retry_after_seconds)}
        return error_response(status, exc.code, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "ValidationError", describe_validation(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_OF_HTTP.get(exc.status_code, "InternalError" if exc.status_code >= 500 else "Error")
        details = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, code, details, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Log the whole story for operators; tell the caller nothing internal.
        logger.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "InternalError", "an internal error occurred")
