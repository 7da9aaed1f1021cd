"""The auth dependency of the FastAPI app: every route gets its `Principal` from here.

The evidence and its order are `principal.resolve_principal`'s (framework-free, shared with
the stream app); docs/security.md explains the trust model.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from workflow_runs.auth import Principal

from .principal import LWA_CONTEXT_HEADER, resolve_principal

current_principal = resolve_principal

PrincipalDep = Annotated[Principal, Depends(current_principal)]

__all__ = ["LWA_CONTEXT_HEADER", "PrincipalDep", "current_principal"]
