"""`workflow-runs dev --cors-origin`: repeatable, checked, and answered on both apps of a
listener (the stream routes too) by one middleware in front of them."""

from __future__ import annotations

import httpx
import pytest
from workflow_runs_dev.cli import build_parser
from workflow_runs_dev.runtime import route_by_function

ORIGIN = "http://localhost:5173"


def test_cors_origin_is_repeatable_and_checked(capsys):
    args = build_parser().parse_args(["dev", "--cors-origin", ORIGIN, "--cors-origin", "https://app.example.com"])
    assert args.cors_origin == [ORIGIN, "https://app.example.com"]
    assert build_parser().parse_args(["dev"]).cors_origin == []
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dev", "--cors-origin", "localhost:5173/app"])
    assert "not an origin" in capsys.readouterr().err


async def _answer(scope: dict, receive, send, text: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": text})


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "served_by"), [("/api/v1/workflow-runs", b"api"),
                                                 ("/api/v1/workflow-runs/execute/stream", b"stream")])
async def test_both_apps_of_a_listener_answer_cors(path: str, served_by: bytes):
    app = route_by_function(lambda s, r, w: _answer(s, r, w, b"api"), lambda s, r, w: _answer(s, r, w, b"stream"),
                            (ORIGIN,))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dev") as client:
        preflight = await client.options(path, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        response = await client.post(path, headers={"Origin": ORIGIN})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == ORIGIN
    assert response.content == served_by and response.headers["access-control-allow-origin"] == ORIGIN
