"""The whole product on one machine: an embedded DynamoDB (or one already running, at
`dynamodb_endpoint`), the local orchestrator running the real step runner, a stream poller
feeding the real projector, and both HTTP apps on two listeners (public, and internal = the
private API's stand-in). With `faults`, a FaultInjector stands in front of every AWS call
the runtime makes from its start on (see faults.py): every DynamoDB client, the stream
poller's DynamoDB Streams client, the orchestrator (Step Functions' calls) and the model
call of `llm` steps; start-up itself waits a storm out."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflow_runs.models import Workflow, WorkflowDefinition
from workflow_runs.service import RunService
from workflow_runs.settings import Settings
from workflow_runs.store import RunStore, dynamodb_client

from . import aws_calls, dynamodb_local
from .faults import FaultInjector, FaultyOrchestrator, faulty_registry

logger = logging.getLogger("workflow_runs.dev")

RUNS_TABLE = "workflow-runs"
EVENTS_TABLE = "workflow-run-events"
DEV_TENANT = "dev"
# The internal listener trusts `X-Tenant-Id` (it stands for the private API): it listens on
# loopback only, whatever `--host` says, so opening the public listener to a network never
# opens the trusted one with it.
INTERNAL_HOST = "127.0.0.1"
# How long start-up waits out a busy store (a storm of throttles) before giving up.
START_PATIENCE_SECONDS = 60.0
# Paths the stream function serves in AWS; every other path belongs to the API function.
STREAM_SUFFIXES = ("/execute/stream", "/events")
# The run viewer's static page (workflow_runs_stream.viewer), served beside the stream routes.
VIEWER_PREFIX = "/viewer"


def route_by_function(api_app: Any, stream_app: Any, cors_allow_origins: tuple[str, ...] = (),
                      viewer_app: Any | None = None) -> Any:
    """One listener, two apps, split exactly as API Gateway and the function URL split them;
    CORS answered in front of both, as each does in AWS; `/viewer/` goes to the run viewer's
    page when one is given."""
    from workflow_runs_http.cors import CorsMiddleware

    async def app(scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if viewer_app is not None and scope["type"] == "http" and (
                path == VIEWER_PREFIX or path.startswith(VIEWER_PREFIX + "/")):
            await viewer_app(scope, receive, send)
        elif scope["type"] == "http" and path.rstrip("/").endswith(STREAM_SUFFIXES):
            await stream_app(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan_noop(receive, send)
        else:
            await api_app(scope, receive, send)

    return CorsMiddleware(app, allow_origins=cors_allow_origins)


async def _lifespan_noop(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _checked_settings(env: dict[str, str]) -> Settings:
    """The settings of `env`, or a ValueError saying in one line what is wrong with them."""
    from pydantic import ValidationError

    try:
        return Settings.from_env(env)
    except ValidationError as exc:
        raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None


class PortInUse(RuntimeError):
    """A listener's address is taken: said in one line, naming the settings that move it."""

    def __init__(self, busy: list[tuple[str, str, int]]):
        self.busy = busy
        taken = " and ".join(f"{host}:{port} ({what})" for what, host, port in busy)
        super().__init__(f"{taken} already in use; choose free ports, e.g. "
                         "make dev PORT=8100 INTERNAL_PORT=8101 "
                         "(or workflow-runs dev --port 8100 --internal-port 8101)")


def busy_addresses(listeners: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """The (what, host, port) of `listeners` that cannot be bound now (as uvicorn binds them)."""
    busy = []
    for what, host, port in listeners:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                busy.append((what, host, port))
    return busy


@dataclass(frozen=True)
class LoadedExample:
    workflow: Workflow
    file: str

    @property
    def needs_inputs(self) -> bool:
        return any(i.required and i.default is None for i in self.workflow.inputs)


def load_examples(service: RunService, tenant: str, folder: Path) -> list[LoadedExample]:
    """Put every workflow definition of `folder` (YAML, with an `id`) for `tenant`."""
    import yaml

    loaded = []
    for path in sorted(folder.glob("*.y*ml")):
        document = yaml.safe_load(path.read_text())
        workflow_id = document.pop("id")
        workflow = service.put_workflow(tenant, workflow_id, WorkflowDefinition.model_validate(document))
        loaded.append(LoadedExample(workflow, path.name))
    return loaded


def patiently(call: Any, patience: float = START_PATIENCE_SECONDS) -> Any:
    """`call()`, made again while the store stays busy (a storm outlasts the store's own
    retries), for up to `patience` seconds: start-up waits a storm out."""
    from workflow_runs.errors import Unavailable

    give_up, delay = time.monotonic() + patience, 0.1
    while True:
        try:
            return call()
        except Unavailable:
            if time.monotonic() >= give_up:
                raise
            logger.warning("the store is busy at start; trying again", extra={"in_seconds": delay})
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


@dataclass
class LocalRuntime:
    host: str = "127.0.0.1"
    port: int = 8000
    internal_port: int = 8001
    dynamodb: str = "auto"  # auto | local | moto; ignored when dynamodb_endpoint is given
    # An already running DynamoDB (a shared DynamoDB Local, or anything speaking its protocol):
    # used instead of starting one; its tables are created when missing, reused when present.
    dynamodb_endpoint: str | None = None
    # In front of every AWS call from the start on. With projector_faults off, the projector
    # (and the stream poller) get clients of their own that the faults do not reach.
    faults: FaultInjector | None = None
    projector_faults: bool = True
    examples_dir: Path | None = None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    # Browser origins allowed to call both listeners (`--cors-origin`); added to any
    # CORS_ALLOW_ORIGINS of `env`.
    cors_origins: tuple[str, ...] = ()
    retry_interval_scale: float = 1.0

    settings: Settings | None = None
    store: RunStore | None = None
    service: RunService | None = None
    token: str | None = None
    db_kind: str | None = None  # dynamodb-local | moto | external
    tables_created: list[str] = field(default_factory=list)
    loaded_examples: list[LoadedExample] = field(default_factory=list)
    _db: Any = None
    _orchestrator: Any = None
    _poller: Any = None
    _servers: list[Any] = field(default_factory=list)
    _thread: threading.Thread | None = None

    @property
    def public_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def internal_url(self) -> str:
        return f"http://{INTERNAL_HOST}:{self.internal_port}"

    @property
    def dynamodb_url(self) -> str | None:
        return self.settings.dynamodb_endpoint_url if self.settings else None

    @property
    def orchestrator(self) -> Any:
        """The local orchestrator: tools and tests ask it whether a run's execution has ended."""
        return self._orchestrator

    def wait_projected(self, timeout: float = 10.0) -> bool:
        """Block until every change written so far has been handed to the projector."""
        return self._poller is not None and self._poller.wait_idle(timeout)

    def start(self) -> LocalRuntime:
        # Before anything is started: a taken port is one clear line, not a half-started server.
        busy = busy_addresses([("the public listener, PORT", self.host, self.port),
                               ("the internal listener, INTERNAL_PORT", INTERNAL_HOST, self.internal_port)])
        if busy:
            raise PortInUse(busy)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from workflow_runs.devkeys import DevIdentity
        from workflow_runs_api.app import create_app as create_api_app
        from workflow_runs_step_runner import reconciler
        from workflow_runs_stream import projector
        from workflow_runs_stream.app import create_app as create_stream_app
        from workflow_runs_stream.viewer import viewer_app

        from .orchestrator import LocalOrchestrator
        from .stream_poller import StreamPoller, streams_client

        env = {
            "RUNS_TABLE": RUNS_TABLE,
            "EVENTS_TABLE": EVENTS_TABLE,
            "LLM_PROVIDER": "echo",
            "LOCAL_SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            **{k: v for k, v in self.env.items() if v},
        }
        if self.cors_origins:
            env["CORS_ALLOW_ORIGINS"] = ",".join(filter(None, (env.get("CORS_ALLOW_ORIGINS"), *self.cors_origins)))
        _checked_settings(env)  # a bad setting (CORS_ALLOW_ORIGINS=*) stops us before anything starts
        if self.dynamodb_endpoint:
            dynamodb_local.use_local_credentials()
            endpoint, self.db_kind = self.dynamodb_endpoint, "external"
        else:
            self._db = dynamodb_local.start_embedded(self.dynamodb)
            endpoint, self.db_kind = self._db.endpoint_url, self._db.kind
        env["DYNAMODB_ENDPOINT_URL"] = endpoint
        settings = _checked_settings(env)
        client = dynamodb_client(endpoint)
        self.tables_created = dynamodb_local.create_tables(client, settings.runs_table, settings.events_table)
        faults = self.faults
        if faults is not None:
            faults.attach(client)
            logger.warning("faults injected into every AWS call", extra={"faults": faults.describe()})

        verifier = None
        dev_jwks = None
        if not settings.jwks_url:
            identity = DevIdentity.generate()
            settings = identity.settings_for(settings, jwks_url=f"{self.public_url}/.well-known/jwks.json")
            verifier = identity.verifier(settings)
            dev_jwks = identity.jwks
            self.token = identity.token(tenant=DEV_TENANT, tenant_claim=settings.jwt_tenant_claim)
        self.settings = settings
        self.store = RunStore(settings, client=client)
        self._orchestrator = LocalOrchestrator(
            settings=settings, store=self.store, retry_interval_scale=self.retry_interval_scale,
            registry=faulty_registry(faults) if faults is not None else None,
        )
        orchestrator: Any = self._orchestrator if faults is None else FaultyOrchestrator(self._orchestrator, faults)
        recorder = aws_calls.from_environment()
        if recorder is not None:
            recorder.know(settings)
            orchestrator = aws_calls.RecordedOrchestrator(orchestrator, recorder)
        self.service = RunService(self.store, orchestrator, settings)
        projector_store = self.store
        streams = streams_client(endpoint)
        if faults is not None and not self.projector_faults:
            # The same factory, uncached: a client the injector is not attached to.
            projector_store = RunStore(settings, client=dynamodb_client.__wrapped__(endpoint))
        elif faults is not None:
            faults.attach(streams)
        self._poller = StreamPoller(settings, lambda batch, context: projector.handler(batch, context,
                                                                                       store=projector_store),
                                    # In AWS the repair is the reconciler's (the projector's on-failure queue feeds it)
                                    client=streams, repair=aws_calls.as_function(
                                        "reconciler", lambda run_id: reconciler.repair(projector_store, run_id)))
        self._poller.start()

        def apps(internal: bool) -> Any:
            common: dict[str, Any] = {"settings": settings, "service": self.service, "verifier": verifier,
                                      "internal_listener": internal}
            api = create_api_app(**common, dev_jwks=None if internal else dev_jwks)
            return route_by_function(aws_calls.asgi_as_function("api", api),
                                     aws_calls.asgi_as_function("stream", create_stream_app(**common)),
                                     settings.cors_allow_origins, viewer_app())

        self.listen(apps(False), apps(True))
        if self.examples_dir and self.examples_dir.is_dir():
            service, folder = self.service, self.examples_dir
            self.loaded_examples = patiently(lambda: load_examples(service, DEV_TENANT, folder))

    def listen(self, public_app: Any, internal_app: Any) -> None:
        """Serve the public app on `host:port` and the internal one on loopback only; each
        answers only a `Host` that names it (hosts.py: DNS rebinding)."""
        import uvicorn

        from .hosts import HostGuard

        listeners = [(public_app, self.host, self.port), (internal_app, INTERNAL_HOST, self.internal_port)]
        self._servers = [
            uvicorn.Server(uvicorn.Config(HostGuard(app, host), host=host, port=port, log_level="warning",
                                          lifespan="off", timeout_graceful_shutdown=2))
            for app, host, port in listeners
        ]
        for server in self._servers:
            server.install_signal_handlers = lambda: None  # the CLI owns Ctrl-C

        async def serve(server: Any) -> None:
            try:
                await server.serve()
            except SystemExit:  # uvicorn's "could not bind" (logged already); reported below
                pass

        async def serve_all() -> None:
            await asyncio.gather(*(serve(server) for server in self._servers))

        self._thread = threading.Thread(target=asyncio.run, args=(serve_all(),), name="dev-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not all(server.started for server in self._servers):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"could not listen on {self.host}:{self.port} and "
                                   f"{INTERNAL_HOST}:{self.internal_port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.faults is not None:
            self.faults.detach()
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._orchestrator is not None:
            self._orchestrator.shutdown()
        if self._poller is not None:
            self._poller.stop()
        if self._db is not None:
            self._db.stop()
            self._db = None
