"""The composition root: one process serving the engine over REST and gRPC on one loop.

``ferry serve`` ends here. The engine loads and warms every model first; only then do the
ports open, so a client (or a Kubernetes readiness probe) never reaches a half-loaded
server. uvicorn (REST) and ``grpc.aio`` (gRPC) share the event loop the engine runs on,
so a request never crosses threads except for the model computation itself.

Signals: SIGTERM/SIGINT stop the server gracefully (:func:`_stop_on`): readiness turns
false at once while requests are still answered for ``shutdown_grace`` seconds (so load
balancers stop sending), then the ports close, each keep-alive connection's next request
is answered with ``Connection: close``, in-flight requests finish, and the process exits
within ``drain_timeout``. A second SIGINT (Ctrl-C again) stops at once. SIGHUP reloads
every served model (hot swap). ``--watch`` polls the repository and hot-swaps a model
whenever its versions change.

``--workers N`` starts N such processes (spawned, not forked: ONNX Runtime and gRPC hold
threads that do not survive a fork) that listen on the same ports with ``SO_REUSEPORT``;
the kernel spreads connections among them. The parent supervises them
(:func:`_run_workers`): a worker that dies is started again after a backoff, while the
others go on serving; one that dies :data:`START_FAILURES` times in a row before it is
ready stops the server. Their Prometheus metrics are kept in a shared directory so that a
scrape of any worker reports the whole server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ferry import errors
from ferry.call import internal_call
from ferry.engine import Engine
from ferry.errors import ConfigError, FerryError
from ferry.observability.logging import configure_logging
from ferry.policy import Policy
from ferry.repository import Repository, TrustedKeys
from ferry.settings import RateLimitSettings, RateRule, SecuritySettings, ServerSettings

if TYPE_CHECKING:
    from ferry.protocols.grpc.health import ReadinessHealthServicer
    from ferry.security.audit import AuditLog
    from ferry.security.tls import ServerTls

__all__ = ["RESTART_DELAY", "RESTART_DELAY_MAX", "STABLE_AFTER", "START_FAILURES", "Endpoints",
           "run", "security_policies", "serve", "trusted_keys"]

log = logging.getLogger("ferry.server")

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds before a dead worker is started again; doubled after each death, up to
#: :data:`RESTART_DELAY_MAX`, and back to this after a worker served :data:`STABLE_AFTER` s.
RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 60.0
#: Deaths in a row before a worker reports ready (a crash at load, a repository that broke
#: since the server started) that stop the server instead of restarting it again.
START_FAILURES = 5
#: Seconds a stopping worker, its own port closed, waits for the others to close theirs.
_PORTS_CLOSED_WAIT = 2.0


@dataclass(frozen=True)
class Endpoints:
    """Where a started server listens, and what it serves."""

    host: str
    http_port: int
    grpc_port: int
    models: list[str]
    default_model: str | None
    tls: bool = False

    @property
    def url(self) -> str:
        """The REST base URL (``https`` with TLS)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.http_port}"


def run(settings: ServerSettings, *, on_ready: Callable[[Endpoints], None] | None = None
        ) -> int:
    """Serve until stopped by a signal; returns the process exit code.

    Raises:
        ConfigError, NotFoundError, ArtifactError: the server cannot start (one line).
    """
    if settings.workers > 1:
        return _run_workers(settings, on_ready)
    _event_loop_run(serve(settings, on_ready=on_ready))
    return 0


async def serve(settings: ServerSettings, *,
                on_ready: Callable[[Endpoints], None] | None = None,
                stop: asyncio.Event | None = None,
                ports_closed: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
    """Load, warm, listen, serve until a signal (or ``stop``), then drain and close.

    ``ports_closed`` is awaited on a stop once this process has closed its REST port and
    before its keep-alive clients are told to go (``--workers``: until every worker closed
    its own, so that a client told to reconnect finds no port of the server open).
    """
    # Imported here: `ferry --help` and the other verbs should not pay for web servers.
    import uvicorn

    from ferry.protocols.grpc.health import ReadinessHealthServicer
    from ferry.protocols.grpc.server import SERVICE_NAME, GrpcLimits, bind, build_server
    from ferry.protocols.rest.app import create_app
    from ferry.protocols.rest.http11 import http_protocol
    from ferry.protocols.rest.limits import HttpLimits
    from ferry.protocols.rest.uvicorn_seam import check_uvicorn

    # The REST protocol relies on uvicorn internals: an untested uvicorn fails here, in
    # one line, before any model loads (protocols/rest/uvicorn_seam.py).
    check_uvicorn()
    configure_logging(settings.log_format, settings.log_level)
    repository = Repository(settings.repository,
                            trusted_keys=trusted_keys(settings.security))
    if not repository.exists():
        raise ConfigError(f"repository {repository.location!r} does not exist",
                          hint="import a model first (ferry import FILE --name NAME), or "
                          "run `ferry demo`")
    policies, audit = security_policies(settings.security, host=settings.host,
                                        rate_limit=settings.rate_limit)
    tls = _server_tls(settings.security)
    engine = Engine(repository, models=settings.models, defaults=settings.model_defaults,
                    default_model=settings.default_model, drain_timeout=settings.drain_timeout,
                    policies=policies, max_request_elements=settings.max_request_elements,
                    default_timeout=settings.request_timeout,
                    max_backlog=settings.max_backlog)
    await engine.start()
    loop = asyncio.get_running_loop()
    grpc_server = None
    grpc_stop: list[asyncio.Task[None]] = []  # the gRPC stop, once _stop_on began it
    drain_until: list[float] = []  # when the drain must end (loop time), once it began
    try:
        http_sock = _listen(settings.host, settings.http_port, reuse_port=settings.workers > 1)
        client_certificates = tls is not None and tls.client_auth
        health = ReadinessHealthServicer(engine, [SERVICE_NAME],
                                         client_certificates=client_certificates)
        grpc_server = build_server(engine, max_message_bytes=settings.max_message_bytes,
                                   limits=GrpcLimits(
                                       max_concurrent_streams=settings.grpc_max_concurrent_streams,
                                       max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
                                       max_connection_idle=settings.grpc_max_connection_idle,
                                       handshake_timeout=settings.grpc_handshake_timeout),
                                   client_certificates=client_certificates, health=health)
        grpc_port = bind(grpc_server, settings.host, settings.grpc_port, tls)
        await grpc_server.start()
        limits = HttpLimits(max_connections=settings.http_max_connections,
                            head_timeout=settings.http_head_timeout)
        app = create_app(engine, max_body_bytes=settings.max_body_bytes, limits=limits,
                         console_on=settings.console)
        # Every connection is ferry's HTTP/1.1 protocol (http11.py): llhttp parses, plain
        # inference requests are answered without ASGI, the rest go to the app.
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None,
                                http=http_protocol(app.state.rest_context, limits),
                                # The protocol reads it as a float (seconds).
                                timeout_keep_alive=settings.http_keep_alive,  # type: ignore[arg-type]
                                backlog=4096,
                                # uvicorn hands it to asyncio.wait_for: a float works.
                                timeout_graceful_shutdown=settings.drain_timeout,  # type: ignore[arg-type]
                                ssl_context_factory=_ssl_context_factory(tls))
        http = _Uvicorn(config)
        stopping = stop or asyncio.Event()
        force = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_stop_signal, sig, stopping, force)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload(engine, tls)))
        tasks = [loop.create_task(_stop_on(_Stop(
            stopping, force, engine, http, http_sock, grpc_server, health, settings,
            grpc_stop, drain_until, ports_closed)))]
        if settings.watch:
            tasks.append(loop.create_task(_watch(engine, settings)))
        _freeze_startup_objects()
        endpoints = Endpoints(settings.host, http_sock.getsockname()[1], grpc_port,
                              engine.served_models(), engine.default_model(),
                              tls=tls is not None)
        log.info("serving %s on %s (REST) and %s:%d (gRPC)", ", ".join(endpoints.models),
                 endpoints.url, settings.host, grpc_port)
        if on_ready is not None:
            on_ready(endpoints)
        try:
            await http.serve(sockets=[http_sock])
        finally:
            for task in tasks:
                task.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            http_sock.close()
    finally:
        if grpc_stop:  # begun with the REST drain (_stop_on): wait for its end
            await asyncio.gather(*grpc_stop, return_exceptions=True)
        elif grpc_server is not None:
            await grpc_server.stop(grace=settings.drain_timeout)
        # What the drain left of drain_timeout: the process exits within its bound.
        remaining = max(0.0, drain_until[0] - loop.time()) if drain_until \
            else settings.drain_timeout
        await engine.stop(timeout=remaining)
        if audit is not None:
            audit.close()
        log.info("stopped")


def trusted_keys(security: SecuritySettings) -> TrustedKeys | None:
    """The keys every loaded version must be signed by (``trusted_keys_file``), or None.

    Raises:
        ConfigError: the file cannot be read, has a bad line, or lists no key.
    """
    if security.trusted_keys_file is None:
        return None
    keys = TrustedKeys(security.trusted_keys_file)
    log.info("signed models only: %d trusted key(s) from %s", len(keys.keys()),
             security.trusted_keys_file)
    return keys


def security_policies(security: SecuritySettings, *, host: str = "127.0.0.1",
                      rate_limit: RateLimitSettings | None = None
                      ) -> tuple[list[Policy], AuditLog | None]:
    """The policies ``[security]`` asks for, and the audit log they write to (or None).

    Authentication and authorization when a keys file or a JWT key is configured (none:
    every caller may do everything, as in ``ferry demo``); the audit policy when
    ``audit_log`` is set; the rate limit when ``rate_limit`` (``[rate_limit]``) has a
    rate. The same chain holds on every door (REST lane, ASGI app, gRPC).

    Raises:
        ConfigError: a JWT key file cannot be read or is unusable.
    """
    policies: list[Policy] = []
    audit: AuditLog | None = None
    if security.audit_log is not None:
        from ferry.security.audit import Audit, AuditLog

        try:
            audit = AuditLog(security.audit_log)
        except OSError as exc:
            raise ConfigError(f"[security] audit_log = {security.audit_log!r}: cannot open "
                              f"it ({exc.strerror})") from None
        policies.append(Audit(audit))
    if security.enabled:
        from ferry.security import Authenticate, JwtVerifier, KeyStore
        from ferry.security.roles import Authorize

        keys = jwt = None
        if security.api_keys_file is not None:
            keys = KeyStore(security.api_keys_file)
            if not security.api_keys_file.exists():
                log.warning("API keys file %s does not exist yet: no API key is accepted "
                            "until `ferry keys add` writes it", security.api_keys_file)
        if security.jwt_hs256_secret_file is not None or security.jwt_jwks_file is not None:
            jwt = JwtVerifier.from_files(secret_file=security.jwt_hs256_secret_file,
                                         jwks_file=security.jwt_jwks_file,
                                         audience=security.jwt_audience,
                                         issuer=security.jwt_issuer,
                                         leeway=security.jwt_leeway)
        certificates = None
        if security.tls_client_principal:
            from ferry.security.grants import parse_grants

            certificates = parse_grants(security.tls_client_grants, error=ConfigError)
        policies += [Authenticate(keys=keys, jwt=jwt, certificate_grants=certificates,
                                  open_health=security.open_health, audit=audit),
                     Authorize(audit=audit)]
        log.info("authentication on (%s), health checks %s%s",
                 " and ".join(what for what, on in (("API keys", keys), ("JWT", jwt),
                                                    ("client certificates", certificates))
                              if on is not None),
                 "open" if security.open_health else "need credentials",
                 f"; audit log: {audit.where}" if audit is not None else "")
    elif host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("authentication is off and the server listens on %s: every caller may "
                    "infer, load and unload; set [security] api_keys_file or a JWT key "
                    "(docs/serving.md)", host)
    if rate_limit is not None and rate_limit.enabled:
        policies.append(rate_limit_policy(rate_limit))
    return policies, audit


def rate_limit_policy(settings: RateLimitSettings) -> Policy:
    """The :class:`~ferry.limits.RateLimit` policy ``[rate_limit]`` describes (rate set)."""
    from ferry.limits import Rate, RateLimit
    from ferry.policy import Kind

    assert settings.rate is not None
    default = RateRule(rate=settings.rate, burst=settings.burst)
    kinds = list(Kind) if settings.calls == "all" else [Kind.INFER]
    policy = RateLimit(Rate(default.rate, default.bucket),
                       overrides={key: Rate(rule.rate, rule.bucket)
                                  for key, rule in settings.principals.items()},
                       kinds=kinds, max_callers=settings.max_callers)
    log.info("rate limit on: %g calls/s per caller, %d at once (%s calls; %d override(s))",
             default.rate, default.bucket, settings.calls, len(settings.principals))
    return policy


def _server_tls(security: SecuritySettings) -> ServerTls | None:
    """The TLS material ``[security] tls_*`` names (None: plain TCP, as ``make serve``).

    Raises:
        ConfigError: a file is missing, unreadable or unusable.
    """
    if security.tls_cert_file is None or security.tls_key_file is None:
        return None
    from ferry.security.tls import ServerTls

    tls = ServerTls(security.tls_cert_file, security.tls_key_file,
                    security.tls_client_ca_file)
    log.info("TLS on for REST and gRPC (TLS 1.2+, certificate %s)%s", tls.cert_file,
             f"; client certificates required, CA {tls.client_ca_file}" if tls.client_auth
             else "")
    return tls


def _ssl_context_factory(tls: ServerTls | None) -> Callable[[Any, Any], Any] | None:
    """The ``ssl_context_factory`` (uvicorn's public hook) that serves ``tls.context``."""
    if tls is None:
        return None
    context = tls.context
    return lambda _config, _default: context


class _Uvicorn:
    """uvicorn's server without its signal handling (ours drains the engine too).

    ``uvicorn.Server.serve`` installs SIGINT/SIGTERM handlers and re-raises the signal
    after its own shutdown, which would kill the process before the gRPC server and the
    engine drained. Its ``capture_signals`` hook is replaced with a no-op.
    """

    def __init__(self, config: Any) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self.server = _Server(config)

    async def serve(self, sockets: list[socket.socket]) -> None:
        await self.server.serve(sockets=sockets)
        # uvicorn waited for the connections up to its timeout_graceful_shutdown (the drain
        # bound); any still open (a request past the bound) are closed now.
        for connection in list(self.server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()

    def close_listeners(self, sock: socket.socket) -> None:
        """Stop accepting connections (the open ones go on); uvicorn's stop does it again.

        Before uvicorn has started (a stop during startup) there is nothing to close yet:
        its own stop closes the socket it was given.
        """
        if not self.server.started:
            return
        for server in self.server.servers:
            server.close()
        sock.close()

    def exit(self, *, force: bool = False) -> None:
        self.server.should_exit = True
        if force:
            self.server.force_exit = True


def _on_stop_signal(sig: int, stopping: asyncio.Event, force: asyncio.Event) -> None:
    """SIGTERM/SIGINT: stop gracefully; SIGINT once stopping (Ctrl-C again): stop now.

    A repeated SIGTERM changes nothing: systemd sends it to every process of the unit, so a
    worker gets it from the supervisor and from systemd alike.
    """
    if not stopping.is_set():
        stopping.set()
    elif sig == signal.SIGINT and not force.is_set():
        force.set()


@dataclass
class _Stop:
    """What the graceful stop (:func:`_stop_on`) acts on."""

    stopping: asyncio.Event
    force: asyncio.Event
    engine: Engine
    http: _Uvicorn
    http_sock: socket.socket
    grpc_server: Any
    health: ReadinessHealthServicer
    settings: ServerSettings
    grpc_stop: list[asyncio.Task[None]]  # the gRPC stop, for serve() to wait for
    drain_until: list[float]  # when the drain must end, for serve()'s last step
    ports_closed: Callable[[], Coroutine[Any, Any, None]] | None


async def _stop_on(stop: _Stop) -> None:
    """The graceful stop, once ``stop.stopping`` is set.

    1. Readiness turns false (REST ``/v2/health/ready`` 503, gRPC ``ServerReady`` false,
       ``grpc.health`` NOT_SERVING) while every request is still answered, for
       ``shutdown_grace`` seconds: time for load balancers and probes to stop sending.
    2. The ports close. gRPC ends its health ``Watch`` streams, sends GOAWAY and lets the
       calls in flight finish. The REST port stops accepting; once ``ports_closed`` (every
       worker's port closed too) each keep-alive connection's next request is answered
       with ``Connection: close`` (http11.py ``HttpProtocol.shutdown``). Both within
       ``drain_timeout``.

    ``force`` (a second Ctrl-C) skips what is left of the grace and of the drain.
    """
    settings, force = stop.settings, stop.force
    await stop.stopping.wait()
    stop.engine.withdraw()
    loop = asyncio.get_running_loop()
    forced = loop.create_task(force.wait())
    try:
        if settings.shutdown_grace > 0:
            log.info("stopping: readiness is false; still answering for %.1f s "
                     "(shutdown_grace) before the ports close", settings.shutdown_grace)
            await asyncio.wait([forced], timeout=settings.shutdown_grace)
        if force.is_set():
            log.warning("stopping now: in-flight requests are cut")
        log.info("stopping: closing the ports; draining in-flight requests (up to %.1f s)",
                 settings.drain_timeout)
        stop.drain_until.append(loop.time() + settings.drain_timeout)
        stop.http.close_listeners(stop.http_sock)
        with contextlib.suppress(FerryError):  # a policy refusing the check: streams end
            await stop.health.finish()
        grace = 0.0 if force.is_set() else settings.drain_timeout
        stop.grpc_stop.append(loop.create_task(stop.grpc_server.stop(grace=grace)))
        if stop.ports_closed is not None and not force.is_set():
            closed = loop.create_task(stop.ports_closed())
            await asyncio.wait([forced, closed], return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
        stop.http.exit(force=force.is_set())
        if not force.is_set():
            await forced
            log.warning("stopping now: in-flight requests are cut")
            stop.http.exit(force=True)
            stop.grpc_stop.append(loop.create_task(stop.grpc_server.stop(grace=None)))
    finally:
        forced.cancel()


async def _reload(engine: Engine, tls: ServerTls | None = None) -> None:
    """SIGHUP: read the TLS files again, then reload every served model (hot swap)."""
    if tls is not None:
        try:
            tls.reload()
        except ConfigError as exc:
            log.error("TLS reload failed, the current certificate stays: %s", exc.message)
    call = internal_call("sighup-reload")
    for name in engine.served_models():
        try:
            await engine.load_model(call, name)
        except Exception as exc:
            log.error("reload of %s failed, the served versions stay: %s", name, exc)


async def _watch(engine: Engine, settings: ServerSettings) -> None:
    """Poll the repository; hot-swap a model whose committed versions changed."""
    repository = engine.repository
    pinned = {m.partition(":")[0] for m in settings.models if ":" in m}
    chosen = {m.partition(":")[0] for m in settings.models}
    seen: dict[str, list[int]] = {}
    loop = asyncio.get_running_loop()
    while True:
        names = sorted(chosen) if chosen else await loop.run_in_executor(None,
                                                                         repository.models)
        for name in names:
            if name in pinned:
                continue
            versions = await loop.run_in_executor(None, repository.versions, name)
            if name in seen and seen[name] != versions and versions:
                log.info("new versions of %s: %s; hot-swapping", name, versions)
                try:
                    await engine.load_model(internal_call("repository-watch"), name)
                except Exception as exc:
                    log.error("hot swap of %s failed, the served versions stay: %s", name, exc)
            seen[name] = versions
        await asyncio.sleep(settings.watch_interval)


def _freeze_startup_objects() -> None:
    """Exempt everything loaded so far from the cyclic garbage collector's full passes.

    The models, runtimes and libraries loaded at startup live as long as the process, yet
    every full collection walks them all: measured on the seed network at 64 connections,
    those pauses (tens of ms) set the 99th percentile latency (25 ms, against 5 ms with the
    collector off) and cost ~15 % of the throughput. ``gc.freeze`` (the remedy CPython
    documents for this) moves them to a generation the collector never scans; objects
    made while serving are still collected as usual.
    """
    gc.collect()
    gc.freeze()


def _listen(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """Bind the REST socket ourselves: for SO_REUSEPORT, and to learn a port picked by 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so (without
    # it, small answers wait ~40 ms for delayed ACKs when uvloop is not installed).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen for REST on {host}:{port}: {exc.strerror}",
                          hint="choose another port with --http-port, or stop what uses it"
                          ) from None
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _event_loop_run(coro: Any) -> None:
    """Run on uvloop when installed (faster sockets and timers), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the serving extra
        asyncio.run(coro)
    else:
        uvloop.run(coro)


# ---------------------------------------------------------------------- --workers N


def _run_workers(settings: ServerSettings, on_ready: Callable[[Endpoints], None] | None
                 ) -> int:
    """Start ``settings.workers`` server processes and supervise them until stopped.

    A worker that dies (a crash, the OOM killer) is started again after a backoff
    (:data:`RESTART_DELAY` doubling to :data:`RESTART_DELAY_MAX`) while the others go on
    serving on the shared ports; one that dies :data:`START_FAILURES` times in a row before
    it is ready stops the server, exit status 1, with one line naming it and how it died.
    A worker that reports a start error (a ``FerryError``) before the server was ever ready
    stops it at once: the error is raised as one process would raise it (exit 2).

    Returns:
        0 after a requested stop (SIGTERM/SIGINT) that every worker survived; else 1, or the
        exit code of a worker that failed while stopping.
    """
    if settings.http_port == 0 or settings.grpc_port == 0:
        raise ConfigError("--workers needs fixed ports: give --http-port and --grpc-port")
    configure_logging(settings.log_format, settings.log_level)
    metrics_dir = tempfile.mkdtemp(prefix="ferry-metrics-")
    os.environ[_MULTIPROC_ENV] = metrics_dir
    supervisor = _Supervisor(settings, on_ready, metrics_dir)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT,
                                                       signal.SIGHUP)}
    try:
        for sig in previous:
            signal.signal(sig, supervisor.on_signal)
        return supervisor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        supervisor.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop(_MULTIPROC_ENV, None)


@dataclass
class _Worker:
    """One worker slot: the process in it now, and what its restarts have taught."""

    index: int
    process: Any = None  # multiprocessing's Process, None between a death and its restart
    reports: Any = None  # its pipe: ready report or start error in, "closed" (stopping) out
    ready: bool = False  # the process now in the slot reported ready
    ready_at: float = 0.0
    failures: int = 0  # deaths before ready, in a row
    delay: float = 0.0  # before the next restart (RESTART_DELAY to begin with)
    restart_at: float | None = None
    error: dict[str, Any] | None = None  # the start error its process reported
    closed: bool = False  # stopping, it closed its REST port (and waits for the others)

    @property
    def name(self) -> str:
        return f"ferry-worker-{self.index}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


class _Supervisor:
    """The parent of ``--workers N``: starts, watches and restarts the workers.

    One loop waits on every worker's sentinel (it ends), its report pipe (it is ready) and a
    wake-up pipe the signal handler writes to, with the nearest restart as its timeout.
    """

    def __init__(self, settings: ServerSettings,
                 on_ready: Callable[[Endpoints], None] | None, metrics_dir: str) -> None:
        self.settings = settings
        self.on_ready = on_ready
        self.metrics_dir = metrics_dir
        self.context = multiprocessing.get_context("spawn")
        self.payload = settings.model_dump(mode="json")
        self.workers = [_Worker(i, delay=RESTART_DELAY) for i in range(settings.workers)]
        self.stopping = False  # a stop was asked for (a signal) or decided (failed)
        self.stop_at = 0.0
        self.failed = False  # the server stops because a worker kept dying at start
        self.announced = False  # every worker was ready once: on_ready was called
        self.stop_codes: list[int] = []  # unexpected exit codes of workers while stopping
        self.released = False  # every stopping worker closed its port and was told so
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        for worker in self.workers:
            self.start(worker)
        while not (self.stopping and all(w.process is None for w in self.workers)):
            waits: list[Any] = [self.wake_read]
            waits += [w.process.sentinel for w in self.workers if w.process is not None]
            waits += [w.reports for w in self.workers if w.reports is not None]
            self.handle(multiprocessing.connection.wait(waits, self.timeout()))
            now = time.monotonic()
            if self.stopping:
                if now >= self.stop_at + self.stop_bound():
                    self.kill_stragglers()
                continue
            for worker in self.workers:
                if worker.restart_at is not None and worker.restart_at <= now:
                    self.start(worker)
        if self.failed:
            return 1
        if self.stop_codes:
            return self.stop_codes[0] if self.stop_codes[0] > 0 else 1
        return 0

    def handle(self, woke: list[Any]) -> None:
        """Read the reports, then the deaths, that ``wait`` returned."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake_read, 512)
        for worker in self.workers:
            if worker.reports is not None and worker.reports in woke:
                self.read_report(worker)
        for worker in self.workers:
            if worker.process is not None and worker.process.sentinel in woke:
                self.ended(worker)

    def timeout(self) -> float | None:
        now = time.monotonic()
        if self.stopping:
            return max(0.0, self.stop_at + self.stop_bound() - now)
        restarts = [w.restart_at for w in self.workers if w.restart_at is not None]
        return max(0.0, min(restarts) - now) if restarts else None

    def stop_bound(self) -> float:
        """How long stopping workers get before they are killed: their own bound, and 10 s."""
        return self.settings.shutdown_grace + self.settings.drain_timeout + 10.0

    # ------------------------------------------------------------------ events

    def start(self, worker: _Worker) -> None:
        reports, child_end = self.context.Pipe()
        process = self.context.Process(target=_worker_main,
                                       args=(self.payload, worker.index, child_end),
                                       name=worker.name)
        process.start()
        child_end.close()  # the child holds its own: the pipe ends when the child does
        worker.process, worker.reports = process, reports
        worker.ready, worker.restart_at, worker.error = False, None, None
        worker.closed = False

    def read_report(self, worker: _Worker) -> None:
        try:
            report = worker.reports.recv()
        except (EOFError, OSError):  # the worker is gone; its sentinel tells the rest
            worker.reports.close()
            worker.reports = None
            return
        if "error" in report:
            worker.error = report
            return
        if report.get("closed"):
            worker.closed = True
            self.release_if_all_closed()
            return
        worker.ready, worker.ready_at, worker.failures = True, time.monotonic(), 0
        if not self.announced and all(w.ready for w in self.workers):
            self.announced = True
            if self.on_ready is not None and not self.stopping:
                self.on_ready(Endpoints(**report))

    def ended(self, worker: _Worker) -> None:
        """A worker's process ended: restart it, or stop the server when it keeps failing.

        Raises:
            FerryError: it reported a start error before the server was ever ready.
        """
        process = worker.process
        process.join(5)  # its sentinel closes a moment before it can be reaped
        while worker.reports is not None and worker.reports.poll():
            self.read_report(worker)  # a start error sent just before it exited
        if worker.reports is not None:
            worker.reports.close()
            worker.reports = None
        worker.process = None
        code = process.exitcode
        self.forget_metrics(process.pid)
        how = _how_it_ended(code)
        if self.stopping:
            self.release_if_all_closed()
            if code not in (0, -signal.SIGTERM, -signal.SIGINT, None):
                self.stop_codes.append(code)
                log.error("worker %s (pid %s) %s while stopping", worker.name, process.pid,
                          how, extra={"worker": worker.name, "pid": process.pid,
                                      "exitcode": code})
            return
        now = time.monotonic()
        error = worker.error
        if not worker.ready:
            if error is not None and not self.announced:
                raise _worker_error(error)
            worker.failures += 1
            why = f" before it was ready: {error['error']}" if error else \
                " before it was ready"
            if worker.failures >= START_FAILURES:
                self.fail(f"worker {worker.name} {how}{why} ({worker.failures} times in a "
                          f"row); stopping the server", worker, code)
                return
            count = f" (start failure {worker.failures} of {START_FAILURES})"
        else:
            why = count = ""
            if now - worker.ready_at >= STABLE_AFTER:
                worker.delay = RESTART_DELAY
        delay = worker.delay
        worker.delay = min(delay * 2, RESTART_DELAY_MAX)
        worker.ready = False
        worker.restart_at = now + delay
        log.warning("worker %s (pid %s) %s%s; restarting it in %.1f s%s", worker.name,
                    process.pid, how, why, delay, count,
                    extra={"worker": worker.name, "pid": process.pid, "exitcode": code,
                           "restart_in": delay})

    def release_if_all_closed(self) -> None:
        """Once every serving worker closed its REST port, let them tell their clients to go.

        A worker answers ``Connection: close`` only after this: a client it sends away must
        find no other worker's port still open, where its new connection could wait in a
        backlog that the closing port then resets.
        """
        serving = [w for w in self.workers if w.process is not None and w.ready]
        if self.released or not self.stopping or not all(w.closed for w in serving):
            return
        self.released = True
        for worker in serving:
            with contextlib.suppress(OSError):
                worker.reports.send("closed")

    def fail(self, message: str, worker: _Worker, code: int | None) -> None:
        """Stop the server on its own: one line saying why, then stop every worker."""
        log.error(message, extra={"worker": worker.name, "exitcode": code})
        self.failed = True
        self.begin_stop()

    def on_signal(self, sig: int, _frame: object) -> None:
        """SIGTERM/SIGINT: stop every worker gracefully (Ctrl-C again: at once); SIGHUP: reload.

        SIGHUP goes only to ready workers: one still starting loads the models as they are
        now anyway, and a signal it has no handler for yet would kill it.
        """
        if sig == signal.SIGHUP:
            self.signal_all(signal.SIGHUP, ready_only=True)
        elif not self.stopping:
            self.begin_stop()
        elif sig == signal.SIGINT:
            self.signal_all(signal.SIGINT)
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_write, b"\0")

    def begin_stop(self) -> None:
        self.stopping = True
        self.stop_at = time.monotonic()
        for worker in self.workers:
            worker.restart_at = None
        # SIGTERM, not SIGINT, even for Ctrl-C: the terminal sent the workers SIGINT
        # already, and a second SIGINT tells a worker to stop at once.
        self.signal_all(signal.SIGTERM)

    # ------------------------------------------------------------------ helpers

    def signal_all(self, sig: int, *, ready_only: bool = False) -> None:
        for worker in self.workers:
            pid = worker.pid
            if pid is not None and (worker.ready or not ready_only):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def kill_stragglers(self) -> None:
        for worker in self.workers:
            if worker.pid is not None:
                log.error("worker %s (pid %s) did not stop within %.0f s; killing it",
                          worker.name, worker.pid, self.stop_bound())
                worker.process.kill()
        self.stop_at = time.monotonic()  # their sentinels end the loop

    def forget_metrics(self, pid: int | None) -> None:
        """Drop a dead worker's live gauges (in-flight, queue depth) from the shared dir."""
        if pid is None:
            return
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Leave no worker behind (after an error: SIGTERM, then SIGKILL after 10 s)."""
        self.signal_all(signal.SIGTERM)
        for worker in self.workers:
            if worker.process is not None:
                worker.process.join(10)
                if worker.process.exitcode is None:
                    worker.process.kill()
                    worker.process.join(5)
            if worker.reports is not None:
                worker.reports.close()
        os.close(self.wake_read)
        os.close(self.wake_write)


def _how_it_ended(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _worker_error(report: dict[str, Any]) -> FerryError:
    """Rebuild the error a worker failed to start with, to report it as one process would."""
    kind = getattr(errors, str(report.get("kind")), None)
    if isinstance(kind, type) and issubclass(kind, FerryError):
        try:
            return kind(report["error"], hint=report.get("hint"))
        except TypeError:  # an error class with other arguments
            pass
    return ConfigError(f"a worker failed to start: {report['error']}", hint=report.get("hint"))


def _stop_when_orphaned(parent: int, interval: float = 1.0) -> None:
    """Send this process SIGTERM once ``parent`` is no longer its parent (it died)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.error("the supervisor (pid %d) is gone; stopping this worker", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="ferry-orphan-watch", daemon=True).start()


def _worker_main(payload: dict[str, Any], index: int, reports: Any) -> None:
    """One worker process: the same server, told to share its ports.

    It sends one report on ``reports``: its endpoints once ready, or the error it could not
    start with. It stops (gracefully, as on SIGTERM) if its supervisor dies: a worker never
    serves on without the parent that restarts and stops it.
    """
    settings = ServerSettings.model_validate(payload)
    _stop_when_orphaned(os.getppid())

    def report(endpoints: Endpoints) -> None:
        reports.send({"host": endpoints.host, "http_port": endpoints.http_port,
                      "grpc_port": endpoints.grpc_port, "models": endpoints.models,
                      "default_model": endpoints.default_model, "tls": endpoints.tls})

    async def ports_closed() -> None:
        """Tell the supervisor this port is closed; wait (bounded) until every worker's is."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            reports.send({"closed": True})
            await loop.run_in_executor(None, reports.poll, _PORTS_CLOSED_WAIT)

    try:
        _event_loop_run(serve(settings, on_ready=report, ports_closed=ports_closed))
    except FerryError as exc:
        # Before it is ready this reaches the parent, which reports it once as a one-line
        # error (exit 2) when the server never started, as a single-process server would.
        with contextlib.suppress(OSError):
            reports.send({"error": exc.message, "hint": exc.hint, "kind": type(exc).__name__})
        raise SystemExit(1) from None
    except Exception as exc:
        log.error("worker %d failed", index, exc_info=exc)
        raise SystemExit(1) from None
    finally:
        reports.close()
