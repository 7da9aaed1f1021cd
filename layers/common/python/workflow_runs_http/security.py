"""The auth dependency of the FastAPI app: every route gets its `Principal` from here.

The evidence and its order are `principal.resolve_principal`'s (framework-free, shared with
the stream app); docs/security.md explains the trust model.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from workflow_runs.auth import Principal
from workflow_runs.telemetry import correlate

from .principal import LWA_CONTEXT_HEADER, resolve_principal


async def current_principal(request: Request) -> Principal:
    principal = await resolve_principal(request)
    correlate(tenant=principal.tenant)  # the Lambda invocation's logs carry it from here on
    return principal

PrincipalDep = Annotated[Principal, Depends(current_principal)]

__all__ = ["LWA_CONTEXT_HEADER", "PrincipalDep", "current_principal"]
