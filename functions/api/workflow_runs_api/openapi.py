"""`python -m workflow_runs_api.openapi` prints the OpenAPI document (make openapi)."""

from __future__ import annotations

import json

from .app import create_app


def document() -> dict:
    return create_app().openapi()


if __name__ == "__main__":
    print(json.dumps(document(), indent=2, sort_keys=True))
