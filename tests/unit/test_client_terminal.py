"""What the `workflow-runs` client prints when the server is hostile, odd or interrupted:
server text never reaches the terminal with control characters, a reply that is not JSON and
a Ctrl-C end in one line and a documented exit code, the next-page hint can be followed as
printed, a bad flag shows its own subcommand's usage, and a waiting approval says how to
decide it. Whole commands (parsed as the console script parses them) against a scripted
transport."""

from __future__ import annotations

import io
import json
import shlex
from typing import Any

import httpx
import pytest
from workflow_runs_dev.cli import build_parser, main
from workflow_runs_dev.client import EXIT_INTERRUPTED, EXIT_UNREACHABLE, clean, run_command

RUN_ID = "6f0120c9-a7aa-4a45-8a7c-7c43a07624b5"
WF_ID = "0f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d02"
# a window title, a screen clear, an OSC 52 clipboard write, a C1 CSI, a bell, a backspace
HOSTILE = "\x1b]0;owned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07\x9b31m\x08"


def command(argv: list[str], *replies: Any) -> tuple[int, str, str, list[httpx.Request]]:
    asked: list[httpx.Request] = []
    queue = list(replies)

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, BaseException):
            raise reply
        return reply

    out, err = io.StringIO(), io.StringIO()
    args = build_parser().parse_args([*argv, "--url", "http://api.test", "--token", "t"])
    code = run_command(args, out, err, transport=httpx.MockTransport(answer))
    return code, out.getvalue(), err.getvalue(), asked


def run(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": RUN_ID, "workflowId": WF_ID, "status": status, "createdAt": "2026-12-02T10:00:00.000Z",
            "updatedAt": "2026-12-02T10:00:01.000Z", "activityRuns": [], **extra}


def sse(*frames: tuple[str, str, Any]) -> httpx.Response:
    text = "retry: 0\n\n" + "".join(f"event: {name}\nid: {i}\ndata: {json.dumps(data)}\n\n" for name, i, data in frames)
    return httpx.Response(200, text=text, headers={"Content-Type": "text/event-stream"})


def assert_no_controls(text: str) -> None:
    assert not [c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F], repr(text)


def test_clean_keeps_text_newlines_and_tabs_and_drops_every_control():
    assert clean(f"a\tb\n{HOSTILE}c ü €") == "a\tb\n]0;owned[2J]52;c;ZXZpbA==31mc ü €"


def test_server_text_reaches_the_terminal_without_control_characters():
    body = {"success": True, "workflowRun": run("failed", workflowName=f"Name{HOSTILE}", cancelReason=HOSTILE,
                                                 error={"message": f"boom{HOSTILE}", "stepId": "s"},
                                                 activityRuns=[{"stepId": "s", "status": "failed", "attempt": 1,
                                                                "outputs": {"x": "\x85" + HOSTILE},
                                                                "createdAt": "2026-12-02T10:00:00.000Z",
                                                                "updatedAt": "2026-12-02T10:00:00.500Z"}])}
    code, out, err, _ = command(["runs", "get", RUN_ID], httpx.Response(200, json=body))
    assert code == 0
    assert "Name]0;owned" in out and "boom" in out
    assert_no_controls(out + err)


def test_a_followed_runs_thinking_and_error_text_are_cleaned_and_so_are_api_errors():
    frames = [("workflow-run", "1", {"content": {"workflowRunId": RUN_ID, "status": "running"}}),
              ("thinking", "2", {"content": f"I think{HOSTILE}\nmore", "stepId": "s"}),
              ("error", "3", {"error": f"failed{HOSTILE}", "details": {"status": "failed", "stepId": "s"}})]
    code, out, err, _ = command(["runs", "get", RUN_ID, "--follow"], sse(*frames),
                                httpx.Response(200, json={"workflowRun": run("failed")}))
    assert code == 1 and "I think" in out and "more" in out and "error at step s: failed" in out
    assert_no_controls(out + err)

    refused = httpx.Response(404, json={"success": False, "error": "NotFound", "details": f"no{HOSTILE}"})
    code, out, err, _ = command(["runs", "get", RUN_ID], refused)
    assert code == 4 and "404 NotFound: no" in err
    assert_no_controls(out + err)


def test_a_reply_that_is_not_json_is_one_line_and_exit_5():
    page = httpx.Response(200, text="<html>a proxy's sign-in page</html>", headers={"Content-Type": "text/html"})
    code, out, err, _ = command(["runs", "list"], page)
    assert code == EXIT_UNREACHABLE == 5
    assert out == "" and len(err.strip().splitlines()) == 1
    assert "text/html, not the API's JSON" in err and "Traceback" not in err


def test_ctrl_c_while_following_is_one_line_naming_the_run_and_exit_130():
    frames = [("workflow-run", "1", {"content": {"workflowRunId": RUN_ID, "status": "running"}})]
    code, out, err, _ = command(["run", WF_ID, "--follow"],
                                httpx.Response(200, json={"success": True, "workflow": {"inputs": []}}),
                                sse(*frames), KeyboardInterrupt())
    assert code == EXIT_INTERRUPTED == 130
    assert f"run {RUN_ID}" in out
    said = (f"workflow-runs: interrupted; run {RUN_ID} goes on (follow it again: "
            f"workflow-runs runs get {RUN_ID} --follow)")
    assert err.strip().splitlines() == [said]


def test_the_next_page_hint_repeats_the_filters_its_token_is_bound_to():
    page = {"success": True, "data": [run("failed")],
            "pagination": {"page": 1, "limit": 1, "total": 3, "totalPages": 3, "nextToken": "tok/en+1=="}}
    argv = ["runs", "list", "--workflow-id", WF_ID, "--status", "failed", "--search", "my flow", "--limit", "1"]
    code, out, _, _ = command(argv, httpx.Response(200, json=page))
    assert code == 0
    hint = next(line for line in out.splitlines() if line.startswith("next page: "))
    followed = shlex.split(hint.removeprefix("next page: "))
    assert followed[:3] == ["workflow-runs", "runs", "list"]
    # run as printed, it asks for the next page with the same filters and the token
    _, _, _, asked = command(followed[1:], httpx.Response(200, json={**page, "pagination": {**page["pagination"],
                                                                                             "nextToken": None}}))
    params = dict(asked[0].url.params)
    assert params == {"workflowId": WF_ID, "status": "failed", "search": "my flow", "limit": "1",
                      "nextToken": "tok/en+1=="}


def test_an_unknown_flag_of_a_subcommand_prints_that_subcommands_usage(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main(["runs", "list", "--frob"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: workflow-runs runs list ")
    assert "workflow-runs runs list: error: unrecognized arguments: --frob" in err


def test_follow_of_a_waiting_approval_shows_its_prompt_and_how_to_decide():
    frames = [("workflow-run", "1", {"content": {"workflowRunId": RUN_ID, "status": "waiting"}}),
              ("activity-run", "2", {"content": {"workflowRunId": RUN_ID, "stepId": "review", "status": "waiting",
                                                  "attempt": 1, "outputs": {"prompt": "Publish 'v2'?"}}}),
              ("result", "3", {"success": True, "workflowRun": run("completed")})]
    code, out, _, _ = command(["runs", "get", RUN_ID, "--follow"], sse(*frames))
    assert code == 0
    assert "    waiting for a decision: Publish 'v2'?" in out
    assert f"    decide with: workflow-runs approve {RUN_ID} review [--comment TEXT]" in out
    assert f"workflow-runs reject {RUN_ID} review" in out
