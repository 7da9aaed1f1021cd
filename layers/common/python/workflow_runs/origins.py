"""Browser origins allowed to call the APIs (CORS): one check for every place that reads them
(the settings, the CORS middleware, the stream app's early read, the dev server's
`--cors-origin`). Pure, no imports: the import-light CORS middleware uses it too."""

from __future__ import annotations

from collections.abc import Iterable

ANY_ORIGIN_REFUSED = ("'*' is refused: it would let a page on any web site call the API with a browser's "
                      "credentials (and, through the dev server's internal listener, as any tenant); "
                      "list each origin")


def origin_problem(origin: str) -> str | None:
    """Why `origin` cannot be an allowed origin, or None. `*` never can (docs/security.md, "CORS")."""
    if origin.strip() == "*":
        return ANY_ORIGIN_REFUSED
    scheme, sep, rest = origin.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or any(c in rest for c in "/?#* "):
        return f"{origin!r} is not an origin like https://app.example.com (scheme and host[:port], no path)"
    return None


def checked_origins(origins: Iterable[str], source: str = "CORS_ALLOW_ORIGINS") -> tuple[str, ...]:
    """`origins`, or ValueError naming `source` and the first one that is not an origin."""
    origins = tuple(origins)
    for origin in origins:
        problem = origin_problem(origin)
        if problem:
            raise ValueError(f"{source}: {problem}")
    return origins
