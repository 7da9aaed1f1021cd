"""A workflow's version as an HTTP entity tag: `ETag: "<version>"`, `If-Match: "<version>"`."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Header
from workflow_runs.errors import ValidationFailed

_ONE_VERSION = re.compile(r'^"([1-9][0-9]{0,17})"$')

IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", max_length=64,
           description='the version the edit is based on, as GET\'s ETag gave it: `"3"`; 409 when it is not the stored one'),
]


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_version(value: str | None) -> int | None:
    """The version an If-Match names, None without one. One strong tag only: a weak tag, a
    list or `*` is a 400 (a workflow edit is always based on one version it read)."""
    if value is None:
        return None
    found = _ONE_VERSION.match(value.strip())
    if not found:
        raise ValidationFailed(['If-Match: give one version as GET\'s ETag gave it, e.g. "3"'])
    return int(found.group(1))
