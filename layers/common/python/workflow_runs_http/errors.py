"""One place that turns errors into the contract's uniform body:
`{"success": false, "error": "<Code>", "details": <string | list>}`.

Framework-free at import (Starlette's JSONResponse only): the stream app (Starlette) and the
API app (FastAPI) share the mapping; `install_error_handlers` wires it into a FastAPI app and
`exception_handlers` gives the same as a Starlette `exception_handlers` mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from workflow_runs.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)

if TYPE_CHECKING:
    from fastapi import FastAPI
    from pydantic import BaseModel

logger = logging.getLogger("workflow_runs.http")
M = TypeVar("M", bound="BaseModel")

STATUS_OF: dict[type[DomainError], int] = {
    ValidationFailed: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    TooManyRequests: 429,
    Unavailable: 503,
}
_CODE_OF_HTTP = {400: "ValidationError", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                 405: "MethodNotAllowed", 409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType"}


def error_body(code: str, details: str | list[str]) -> dict:
    # A validation error's details are always a list of `<field>: <what to fix>` lines (one
    # line when the whole request is wrong), so a client reads one shape (docs/api.md, Errors).
    if code == "ValidationError" and isinstance(details, str):
        details = [details]
    return {"success": False, "error": code, "details": details}


def error_response(status: int, code: str, details: str | list[str], headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, details), status_code=status, headers=headers)


def domain_error_response(exc: DomainError) -> JSONResponse:
    status = STATUS_OF.get(type(exc), 500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, (Unavailable, TooManyRequests)):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    return error_response(status, exc.code, exc.details, headers)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own errors (404 no route, 405 wrong method) in the uniform body."""
    code = _CODE_OF_HTTP.get(exc.status_code, "InternalError" if exc.status_code >= 500 else "Error")
    details = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(exc.status_code, code, details, getattr(exc, "headers", None))


def unexpected_error_response(request: Request, exc: Exception) -> JSONResponse:
    # Log the whole story for operators; tell the caller nothing internal.
    logger.exception("unhandled error", extra={"path": request.url.path}, exc_info=exc)
    return error_response(500, "InternalError", "an internal error occurred")


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
    from pydantic import ValidationError  # pydantic stays out of the stream app's import

    try:
        return model(**values)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation(list(exc.errors()))) from None


async def _domain(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return domain_error_response(exc)


async def _http(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return http_error_response(exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return unexpected_error_response(request, exc)


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Any]]:
    """The uniform error body for a plain Starlette app (`Starlette(exception_handlers=…)`)."""
    return {DomainError: _domain, StarletteHTTPException: _http, Exception: _unexpected}


def install_error_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError  # only FastAPI apps call this

    async def _validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(400, "ValidationError", describe_validation(list(exc.errors())))

    for kind, handler in exception_handlers().items():
        app.add_exception_handler(kind, handler)
    app.add_exception_handler(RequestValidationError, _validation)
