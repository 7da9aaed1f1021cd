"""The run viewer's ASGI app: its three files, its security headers, and how it mounts (the
dev server's router, or one line in a Starlette/FastAPI app). What the page does is proved in
a browser (tests/e2e/test_viewer.py); these pin what the server promises."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.testclient import TestClient
from workflow_runs_dev.runtime import route_by_function
from workflow_runs_stream.viewer import CONTENT_SECURITY_POLICY, viewer_app

ASSETS = files("workflow_runs_stream.viewer")


async def _elsewhere(scope, receive, send):
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b"not the viewer"})


@pytest.fixture(params=["dev-router", "starlette-mount", "fastapi-mount"])
def client(request) -> TestClient:
    if request.param == "dev-router":
        app = route_by_function(_elsewhere, _elsewhere, viewer_app=viewer_app())
    elif request.param == "starlette-mount":
        app = Starlette()
        app.mount("/viewer", viewer_app())
    else:
        app = FastAPI()
        app.mount("/viewer", viewer_app())  # the one line the stream app needs
    return TestClient(app, follow_redirects=False)


@pytest.mark.parametrize(("path", "asset", "content_type"), [
    ("/viewer/", "index.html", "text/html; charset=utf-8"),
    ("/viewer/index.html", "index.html", "text/html; charset=utf-8"),
    ("/viewer/viewer.js", "viewer.js", "text/javascript; charset=utf-8"),
    ("/viewer/viewer.css", "viewer.css", "text/css; charset=utf-8"),
])
def test_serves_its_files_with_a_strict_policy(client: TestClient, path: str, asset: str, content_type: str):
    response = client.get(path)
    assert response.status_code == 200
    assert response.content == ASSETS.joinpath(asset).read_bytes()
    assert response.headers["content-type"] == content_type
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_the_policy_allows_this_origin_only_and_no_inline_code():
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_without_the_slash_it_redirects_to_the_page(client: TestClient):
    response = client.get("/viewer")
    # the viewer's own redirect is relative (right behind any stage prefix); under Starlette's
    # Mount, the router answers first, with its own redirect to the same place
    assert response.status_code in (307, 308)
    assert response.headers["location"].endswith("/viewer/") or response.headers["location"] == "viewer/"


def test_unknown_files_and_other_methods_are_refused(client: TestClient):
    assert client.get("/viewer/secrets.txt").status_code == 404
    assert client.get("/viewer/../api/v1/workflow-runs").status_code in (404, 418)
    response = client.post("/viewer/")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
    head = client.head("/viewer/viewer.js")
    assert head.status_code == 200 and head.content == b""


def test_the_dev_router_sends_everything_else_to_the_other_apps():
    client = TestClient(route_by_function(_elsewhere, _elsewhere, viewer_app=viewer_app()))
    assert client.get("/viewerish").status_code == 418
    assert client.get("/api/v1/workflow-runs").status_code == 418


def test_the_page_writes_data_as_text_and_talks_to_its_own_origin_only():
    """A guard on the source beside the browser test: no HTML sinks, no absolute URLs, no
    inline script or style in the page (the policy would block them anyway)."""
    script = re.sub(r"^\s*//.*$", "", ASSETS.joinpath("viewer.js").read_text(), flags=re.MULTILINE)
    page = ASSETS.joinpath("index.html").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert not re.search(r"""["'`]https?://""", script)
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert " style=" not in page and "<style" not in page
    assert "sessionStorage" in script and "localStorage" not in script
