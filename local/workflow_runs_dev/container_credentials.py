"""Credentials as Lambda gives a SnapStart function, on this machine: from an endpoint named
by AWS_CONTAINER_CREDENTIALS_FULL_URI (with an authorization token), expiring within the
hour and renewed by botocore itself — not keys in the environment. For the benchmarks and
the tests of what happens to clients around a snapshot."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
ENDPOINT_NAMES = ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN")


@contextmanager
def served(access_key: str = "local", token: str = "local") -> Iterator[str]:
    """Inside, this process's environment names a loopback credentials endpoint instead of
    keys; yields the endpoint's address. The environment is as before afterwards."""
    authorization = uuid.uuid4().hex

    class Endpoint(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != authorization:
                self.send_error(401)
                return
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
            body = json.dumps({"AccessKeyId": access_key, "SecretAccessKey": "local", "Token": token,
                               "Expiration": expires}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    saved = {name: os.environ.pop(name) for name in (*SECRET_NAMES, *ENDPOINT_NAMES) if name in os.environ}
    address = f"http://127.0.0.1:{server.server_address[1]}/credentials"
    os.environ.update(AWS_CONTAINER_CREDENTIALS_FULL_URI=address, AWS_CONTAINER_AUTHORIZATION_TOKEN=authorization)
    try:
        yield address
    finally:
        server.shutdown()
        server.server_close()
        for name in ENDPOINT_NAMES:
            os.environ.pop(name, None)
        os.environ.update(saved)
