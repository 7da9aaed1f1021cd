"""The AWS clients the functions make, and what becomes of them around a SnapStart snapshot.

A botocore client learns on its first calls what every later call reuses: the resolved
shapes of its operations, its endpoint rules, its serializer and parser paths. Made and
exercised in the init phase, the snapshot keeps all of it, so a restored environment's
first request finds the client ready — if the client survives the restore. Two things of a
client must not: its pooled connections (a socket cannot outlive a snapshot; they are
closed before it is taken and again after the restore, and the next call opens its own)
and its credentials. Under SnapStart, Lambda hands the function container credentials
(`AWS_CONTAINER_CREDENTIALS_FULL_URI`), which botocore holds as refreshable credentials and
renews itself before they expire; those clients are kept. A client holding credentials that
cannot renew themselves (static keys from the environment) is dropped at the restore and
made again by its owner, as before.

Every AWS client of the functions is made here, so what watches their calls watches them
all: `observe(callback)` has `callback(service, operation, params)` called before each call
of every client made here (the local runtime's recorder of IAM requests; nothing in AWS).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
# Every live client made through `make`, with its session (a client its owner let go of is
# forgotten with it).
_made: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
# Called before every call of every client made here; empty in AWS.
_observers: tuple[Callable[[str, str, dict[str, Any]], None], ...] = ()


def observe(callback: Callable[[str, str, dict[str, Any]], None]) -> Callable[[], None]:
    """Have `callback(service, operation, params)` see every later call of every client made
    here (clients made before included); returns what stops it."""
    global _observers
    with _lock:
        _observers = (*_observers, callback)

    def stop() -> None:
        global _observers
        with _lock:
            _observers = tuple(o for o in _observers if o is not callback)

    return stop


def observed(client: Any) -> Any:
    """`client`, whose calls the observers see (every client `make` makes is)."""
    client.meta.events.register("before-parameter-build", _before_call, unique_id="workflow-runs-observers")
    return client


def _before_call(params: dict[str, Any], model: Any, **_: Any) -> None:
    for callback in _observers:
        callback(model.service_model.service_name, model.name, params)


def make(service: str, **kwargs: Any) -> Any:
    """A client of `service` in a session of its own, remembered for the snapshot hooks."""
    import boto3  # deferred: importing this module costs nothing

    session = boto3.session.Session()
    client = session.client(service, **kwargs)  # type: ignore[call-overload]  # any service name
    observed(client)
    with _lock:
        _made[client] = session
    return client


def close_connections() -> None:
    """Close every pooled connection of every client made here; each opens a new one on its
    next call (botocore keeps no other socket)."""
    with _lock:
        clients = list(_made.keys())
    for client in clients:
        client._endpoint.http_session.close()  # botocore has no public way to drop its pool


def renew_themselves() -> bool:
    """Whether every client made here holds credentials that renew themselves (what Lambda
    gives a SnapStart function), so the clients may be kept across a restore."""
    from botocore.credentials import RefreshableCredentials

    with _lock:
        sessions = list(_made.values())
    return all(isinstance(session.get_credentials(), RefreshableCredentials) for session in sessions)
