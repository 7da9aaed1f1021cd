"""The clients the functions make, around a SnapStart snapshot: connections closed, the
clients kept when their credentials renew themselves (what Lambda gives a SnapStart
function), made again when they cannot (static keys)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from workflow_runs import aws_clients, telemetry
from workflow_runs.store import dynamodb_client
from workflow_runs_dev.container_credentials import served


@pytest.fixture
def dynamodb_like() -> Iterator[str]:
    """A loopback server answering every request as DynamoDB answers ListTables, keeping
    connections alive: a client's pool then holds one."""

    class Answer(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b'{"TableNames": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def container_credentials() -> Iterator[None]:
    """Credentials from a container credentials endpoint, as Lambda gives a SnapStart
    function (no keys in the environment)."""
    with served(token="t"):
        yield


@pytest.fixture(autouse=True)
def only_this_tests_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry and the client cache hold this test's clients only (other tests' clients
    may still be alive in this process)."""
    import weakref

    monkeypatch.setattr(aws_clients, "_made", weakref.WeakKeyDictionary())
    dynamodb_client.cache_clear()
    yield
    dynamodb_client.cache_clear()


def pooled(client: Any) -> int:
    """Connections the client's pool holds, open or idle."""
    manager = client._endpoint.http_session._manager
    return sum(pool.pool.qsize() - pool.pool.queue.count(None) for pool in manager.pools._container.values())


def test_closing_connections_empties_every_pool_and_the_next_call_opens_its_own(dynamodb_like: str):
    client = aws_clients.make("dynamodb", endpoint_url=dynamodb_like)
    client.list_tables()
    assert pooled(client) == 1

    aws_clients.close_connections()

    assert pooled(client) == 0
    assert client.list_tables()["TableNames"] == []
    assert pooled(client) == 1


def test_clients_with_static_keys_cannot_be_kept_across_a_restore(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "static")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "static")
    client = aws_clients.make("dynamodb", endpoint_url="http://127.0.0.1:9")

    assert aws_clients.renew_themselves() is False
    del client


def test_clients_with_container_credentials_can(container_credentials: None):
    client = aws_clients.make("dynamodb", endpoint_url="http://127.0.0.1:9")

    assert aws_clients.renew_themselves() is True
    assert client._request_signer._credentials.get_frozen_credentials().token == "t"


def test_after_a_restore_renewing_clients_are_kept_and_nothing_is_made_again(container_credentials: None,
                                                                               dynamodb_like: str):
    before = dynamodb_client(dynamodb_like)
    before.list_tables()
    made_again: list[bool] = []

    telemetry.restored(lambda: made_again.append(True))

    assert dynamodb_client(dynamodb_like) is before and made_again == []
    assert pooled(before) == 0  # no connection from before the snapshot


def test_after_a_restore_static_key_clients_are_dropped_and_made_again(monkeypatch: pytest.MonkeyPatch,
                                                                         dynamodb_like: str):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "static")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "static")
    before = dynamodb_client(dynamodb_like)
    made_again: list[bool] = []

    telemetry.restored(lambda: made_again.append(True))

    assert dynamodb_client(dynamodb_like) is not before and made_again == [True]


def test_a_client_its_owner_let_go_of_is_forgotten():
    import gc

    client = aws_clients.make("dynamodb", endpoint_url="http://127.0.0.1:9")
    assert len(aws_clients._made) == 1
    del client
    gc.collect()

    assert len(aws_clients._made) == 0
