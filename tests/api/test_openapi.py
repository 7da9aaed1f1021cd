"""docs/openapi.json is what the app serves: regenerate with `make openapi` when this fails."""

from __future__ import annotations

import json
from pathlib import Path

from workflow_runs_api.openapi import document

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_checked_in_openapi_document_is_current():
    assert json.loads(CHECKED_IN.read_text()) == json.loads(json.dumps(document())), "run `make openapi`"


def test_every_operation_documents_its_errors_and_success():
    for path, operations in document()["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"400", "401", "500"} <= codes, f"{method.upper()} {path} documents {sorted(codes)}"
            assert any(code.startswith("2") for code in codes)
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"


def test_the_stream_functions_routes_are_in_the_document_as_the_stream_app_serves_them():
    from starlette.routing import Route
    from workflow_runs_stream.app import create_app as create_stream_app

    served = {(route.path, method.lower()) for route in create_stream_app().routes
              if isinstance(route, Route) and route.path != "/health"
              for method in route.methods or () if method != "HEAD"}
    documented = document()["paths"]

    assert served == {("/api/v1/workflow-runs/execute/stream", "post"), ("/api/v1/workflow-runs/{runId}/events", "get")}
    for path, method in served:
        responses = documented[path][method]["responses"]
        assert {"200", "429"} <= set(responses)
        assert "text/event-stream" in responses["200"]["content"]
    assert "204" in documented["/api/v1/workflow-runs/{runId}/events"]["get"]["responses"]
