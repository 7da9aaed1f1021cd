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
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

_lock = threading.Lock()
# Every live client made through `make`, with its session (a client its owner let go of is
# forgotten with it).
_made: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def make(service: str, **kwargs: Any) -> Any:
    """A client of `service` in a session of its own, remembered for the snapshot hooks."""
    import boto3  # deferred: importing this module costs nothing

    session = boto3.session.Session()
    client = session.client(service, **kwargs)  # type: ignore[call-overload]  # any service name
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
