"""`python -m workflow_runs_api.openapi` prints the OpenAPI document (make openapi): the API
app's own operations and the stream function's (`workflow_runs_stream.openapi`), which one
base URL serves together."""

from __future__ import annotations

import json

from .app import create_app


def document() -> dict:
    from workflow_runs_stream.openapi import paths as stream_paths

    doc = create_app().openapi()
    merged = {**doc["paths"], **stream_paths()}
    doc["paths"] = dict(sorted(merged.items()))
    return doc


if __name__ == "__main__":
    print(json.dumps(document(), indent=2, sort_keys=True))
