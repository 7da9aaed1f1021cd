"""Who is calling: every route of both apps gets its `Principal` from `resolve_principal`.

Framework-free (a Starlette `Request`): the API app wraps it in a FastAPI dependency
(`security.PrincipalDep`), the stream app calls it directly.

Order of evidence (docs/security.md explains the trust model):
1. `Authorization: Bearer <jwt>` present → the token decides, on every path (a verified JWT
   is never less trustworthy than the path it came by, and an internal caller that forwards
   a user's token gets that user's tenant).
2. Otherwise the request is internal only if the platform says so: the API Gateway request
   context under Mangum, the context Lambda Web Adapter writes into `x-amzn-request-context`,
   or the dev server's internal listener. Internal callers name their tenant in `X-Tenant-Id`.
3. Otherwise 401. `X-Forwarded-For`, `X-Real-IP`, `Forwarded` and `X-Tenant-Id` are caller
   input and are never read as evidence.
"""

from __future__ import annotations

import json
import logging
import os
from functools import cache
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from workflow_runs.errors import Unauthorized

from .blocking import call_blocking
from .collaborators import settings_of

if TYPE_CHECKING:
    from workflow_runs.auth import Principal
    from workflow_runs.settings import Settings

logger = logging.getLogger("workflow_runs.http.security")

LWA_CONTEXT_HEADER = "x-amzn-request-context"
# Lambda Web Adapter (zip + layer) runs as the exec wrapper; see docs/security.md for why its
# `x-amzn-request-context` can be trusted only when it sits in front of the app.
_LWA_EXEC_WRAPPER = "/opt/bootstrap"


async def resolve_principal(request: Request) -> Principal:
    # Deferred: PyJWT and cryptography load on the first request that needs them.
    from workflow_runs.auth import get_verifier, internal_principal

    settings = settings_of(request)
    token = _bearer_token(request)
    if token is not None:
        verifier = getattr(request.app.state, "verifier", None) or get_verifier(settings)
        # Off the dev server's event loop: a JWKS refetch is a blocking HTTP call.
        return await call_blocking(request, verifier.verify, token)
    if _is_internal(request, settings):
        return internal_principal(request.headers.get("x-tenant-id"))
    raise Unauthorized("missing bearer token")


def _bearer_token(request: Request) -> str | None:
    """The bearer token, None without an Authorization header, 401 for any other shape."""
    values = request.headers.getlist("authorization")
    if not values:
        return None
    if len(values) > 1:
        raise Unauthorized("malformed authorization header")
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("bearer token required")
    return token.strip()


def _is_internal(request: Request, settings: Settings) -> bool:
    if getattr(request.app.state, "internal_listener", False) is True:
        return True
    event = request.scope.get("aws.event")
    if event is not None:
        # Under Mangum the scope carries the Lambda event API Gateway built: the caller
        # cannot write its requestContext. Headers in it are still caller input.
        return _is_private_api(event.get("requestContext") if isinstance(event, dict) else None, settings)
    if _behind_lambda_web_adapter(request):
        return _is_private_api(_lwa_request_context(request), settings)
    return False


def _is_private_api(request_context: Any, settings: Settings) -> bool:
    if not isinstance(request_context, dict):
        return False
    api_id = request_context.get("apiId")
    return isinstance(api_id, str) and bool(api_id) and api_id in settings.private_api_ids


def _lwa_request_context(request: Request) -> Any:
    # LWA (>= 0.7.2) replaces every client-sent header of this name with its own single one;
    # two values mean an older adapter passed a forged one through, so neither is believed.
    values = request.headers.getlist(LWA_CONTEXT_HEADER)
    if len(values) != 1:
        return None
    try:
        return json.loads(values[0])
    except ValueError:
        return None


def _behind_lambda_web_adapter(request: Request) -> bool:
    """True only where LWA is the sole way in; elsewhere the header is plain caller input."""
    flag = getattr(request.app.state, "behind_lambda_web_adapter", None)
    if flag is not None:
        return flag is True
    return _lwa_exec_wrapper_configured()


@cache
def _lwa_exec_wrapper_configured() -> bool:
    # Both are set by the Lambda service from the function's configuration, which no caller
    # controls; on a developer's machine neither is, so a forged header there is ignored.
    return os.environ.get("AWS_LAMBDA_EXEC_WRAPPER") == _LWA_EXEC_WRAPPER and "AWS_LAMBDA_RUNTIME_API" in os.environ
