"""Helpers of the viewer's browser tests: headless Chromium driven over the DevTools protocol
through a pipe (`--remote-debugging-pipe`: JSON messages on fds 3/4, NUL-separated; no
websocket client needed), and a TCP proxy whose connections a test can cut mid-stream."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from workflow_runs_dev.dynamodb_local import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class BrowserError(RuntimeError):
    pass


def dump_dom(url: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Load `url` in a headless Chromium of its own (a fresh profile) and dump the DOM at the load event."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True, text=True, timeout=timeout, check=False,
        )


class ReportingPage:
    """A page whose script posts its report to /report, and an image at /hold that holds the
    page's `load` event open until then (`dump_dom` dumps at the load event)."""

    def __init__(self, html: str):
        self.html = html
        self.report: dict[str, Any] | None = None
        self._reported: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._reported is None:
            self._reported = asyncio.Event()
        return self._reported

    async def page(self, request: Request) -> Response:
        return HTMLResponse(self.html)

    async def hold(self, request: Request) -> Response:
        try:
            await asyncio.wait_for(self._event().wait(), timeout=45)
        except TimeoutError:
            pass
        return Response(status_code=204)

    async def receive_report(self, request: Request) -> Response:
        self.report = await request.json()
        self._event().set()
        return JSONResponse({"ok": True})

    def routes(self) -> list[Route]:
        return [Route("/page", self.page), Route("/hold", self.hold),
                Route("/report", self.receive_report, methods=["POST"])]


class Chromium:
    """One headless Chromium, one page; `evaluate` runs JavaScript in it and returns the value."""

    def __init__(self, width: int = 1280, height: int = 900):
        self.width, self.height = width, height
        self._ids = itertools.count(1)
        self._replies: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.console: list[str] = []
        self.exceptions: list[str] = []
        self.log: list[str] = []  # the browser's own messages (CSP violations, failed loads)
        self.session: str | None = None

    def __enter__(self) -> Self:
        self._profile = tempfile.TemporaryDirectory()
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # fds 3 and 4 in the browser, as --remote-debugging-pipe expects: bash moves them there (dash takes one-digit fds only)
        self.process = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}', CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Log.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(BrowserError, OSError):  # it may be gone already: it is closed either way
            self.send("Browser.close", session=False, timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self._to_browser)
        self._profile.cleanup()

    # ------------------------------------------------------------------ protocol

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                for waiting in list(self._replies.values()):
                    waiting.put({"error": {"message": "chromium closed its pipe"}})
                os.close(self._from_browser)
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        waiting = self._replies.pop(message["id"], None)
                    if waiting is not None:
                        waiting.put(message)
                elif message.get("method") == "Runtime.consoleAPICalled":
                    args = message["params"].get("args", [])
                    self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
                elif message.get("method") == "Log.entryAdded":
                    self.log.append(message["params"]["entry"].get("text", ""))
                elif message.get("method") == "Runtime.exceptionThrown":
                    details = message["params"]["exceptionDetails"]
                    self.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))

    def send(self, method: str, params: dict | None = None, session: bool = True, timeout: float = 30) -> dict:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        reply: queue.Queue = queue.Queue()
        with self._lock:
            self._replies[ident] = reply
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        try:
            answer = reply.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f"{method}: no answer in {timeout} s") from None
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    # ------------------------------------------------------------------ the page

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails'].get('text')} "
                               f"{result['exceptionDetails'].get('exception', {}).get('description', '')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20, interval: float = 0.05) -> Any:
        """Poll `expression` until it is truthy; returns its value. The page's own state, read
        as a user would see it, is the only thing that decides."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                # a DOM node comes back by value as {}: make it plainly true
                last = self.evaluate(f"(v => v instanceof Node ? true : v)({expression})")
            except BrowserError as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            time.sleep(interval)
        raise BrowserError(f"timed out waiting for {expression!r} (last: {last!r}); "
                           f"console: {self.console[-5:]}; exceptions: {self.exceptions[-5:]}")

    def click(self, selector: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def fill(self, selector: str, value: str) -> None:
        self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                      f"e.value = {json.dumps(value)}; e.dispatchEvent(new Event('input')); }})()")

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        path.write_bytes(data)
        return data


class CuttableProxy:
    """A loopback TCP proxy to `target_port`; `cut()` closes every connection open now, as a
    dropped network would (the client sees its response end early). Like a reverse proxy
    (nginx's `proxy_set_header Host`), it names its upstream in `Host`: the dev server answers
    only a `Host` naming itself (hosts.py)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closing = False
        self.cuts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing = True
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            rewrite = (f"Host: 127.0.0.1:{self.port}\r\n".encode(), f"Host: 127.0.0.1:{self.target_port}\r\n".encode())
            for source, sink, swap in ((client, upstream, rewrite), (upstream, client, None)):
                threading.Thread(target=self._pump, args=(source, sink, swap), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, swap: tuple[bytes, bytes] | None) -> None:
        try:
            while chunk := source.recv(65536):
                # a request's head arrives whole in one read on loopback: the header is never split
                sink.sendall(chunk.replace(*swap) if swap else chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> int:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.cuts += 1
        return len(pairs)


# ------------------------------------------------------------------ the run viewer's page, as a user drives it


def sign_in(browser: Chromium, origin: str, token: str) -> None:
    browser.goto(f"{origin}/viewer/")
    browser.fill("#token", token)
    browser.click("#auth button[type=submit]")
    browser.wait_for("document.querySelectorAll('#workflows tbody tr').length > 0")


def run_from_viewer(browser: Chromium, workflow_id: str, inputs: dict | None = None) -> None:
    browser.wait_for(f"document.querySelector('#workflows tr[data-workflow={json.dumps(workflow_id)}]')")
    browser.click(f"#workflows tr[data-workflow='{workflow_id}'] button.run-workflow")
    if inputs is not None:
        browser.fill("#execute-inputs", json.dumps(inputs))
    browser.click("#execute button[type=submit]")


def step(selector_step: str, part: str) -> str:
    return f"document.querySelector('#timeline li[data-step={selector_step}] {part}')"


def shown_event_ids(browser: Chromium) -> list[list[str]]:
    return browser.evaluate("[...document.querySelectorAll('#event-log li')].map(li => [li.dataset.id, li.dataset.name])")
