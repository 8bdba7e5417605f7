"""The composition root: one process serving the engine over REST and gRPC on one loop.

``ferry serve`` ends here. The engine loads and warms every model first; only then do the
ports open, so a client (or a Kubernetes readiness probe) never reaches a half-loaded
server. uvicorn (REST) and ``grpc.aio`` (gRPC) share the event loop the engine runs on,
so a request never crosses threads except for the model computation itself.

Signals: SIGTERM/SIGINT stop accepting, let in-flight requests finish (up to
``drain_timeout``) and exit; SIGHUP reloads every served model (hot swap). ``--watch``
polls the repository and hot-swaps a model whenever its versions change.

``--workers N`` starts N such processes (spawned, not forked: ONNX Runtime and gRPC hold
threads that do not survive a fork) that listen on the same ports with ``SO_REUSEPORT``;
the kernel spreads connections among them. Their Prometheus metrics are kept in a shared
directory so that a scrape of any worker reports the whole server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
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
    from ferry.security.audit import AuditLog
    from ferry.security.tls import ServerTls

__all__ = ["Endpoints", "run", "security_policies", "serve", "trusted_keys"]

log = logging.getLogger("ferry.server")

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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
                stop: asyncio.Event | None = None) -> None:
    """Load, warm, listen, serve until a signal (or ``stop``), then drain and close."""
    # Imported here: `ferry --help` and the other verbs should not pay for web servers.
    import uvicorn

    from ferry.protocols.grpc.server import GrpcLimits, bind, build_server
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
    if not repository.root.is_dir():
        raise ConfigError(f"repository {str(repository.root)!r} does not exist",
                          hint="import a model first (ferry import FILE --name NAME), or "
                          "run `ferry demo`")
    policies, audit = security_policies(settings.security, host=settings.host,
                                        rate_limit=settings.rate_limit)
    tls = _server_tls(settings.security)
    engine = Engine(repository, models=settings.models, defaults=settings.model_defaults,
                    default_model=settings.default_model, drain_timeout=settings.drain_timeout,
                    policies=policies, max_request_elements=settings.max_request_elements,
                    default_timeout=settings.request_timeout)
    await engine.start()
    loop = asyncio.get_running_loop()
    grpc_server = None
    try:
        http_sock = _listen(settings.host, settings.http_port, reuse_port=settings.workers > 1)
        grpc_server = build_server(engine, max_message_bytes=settings.max_message_bytes,
                                   limits=GrpcLimits(
                                       max_concurrent_streams=settings.grpc_max_concurrent_streams,
                                       max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
                                       max_connection_idle=settings.grpc_max_connection_idle,
                                       handshake_timeout=settings.grpc_handshake_timeout),
                                   client_certificates=tls is not None and tls.client_auth)
        grpc_port = bind(grpc_server, settings.host, settings.grpc_port, tls)
        await grpc_server.start()
        limits = HttpLimits(max_connections=settings.http_max_connections,
                            head_timeout=settings.http_head_timeout)
        app = create_app(engine, max_body_bytes=settings.max_body_bytes, limits=limits)
        # Every connection is ferry's HTTP/1.1 protocol (http11.py): llhttp parses, plain
        # inference requests are answered without ASGI, the rest go to the app.
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None,
                                http=http_protocol(app.state.rest_context, limits),
                                # The protocol reads it as a float (seconds).
                                timeout_keep_alive=settings.http_keep_alive,  # type: ignore[arg-type]
                                backlog=4096,
                                ssl_context_factory=_ssl_context_factory(tls))
        http = _Uvicorn(config)
        stopping = stop or asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload(engine, tls)))
        tasks = [loop.create_task(_stop_when(stopping, http))]
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
        if grpc_server is not None:
            await grpc_server.stop(grace=settings.drain_timeout)
        await engine.stop(timeout=settings.drain_timeout)
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

    def exit(self) -> None:
        self.server.should_exit = True


async def _stop_when(event: asyncio.Event, http: _Uvicorn) -> None:
    await event.wait()
    log.info("stopping: draining in-flight requests")
    http.exit()


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
    """Start ``settings.workers`` server processes and supervise them.

    The server stands or falls as a whole: when a worker dies on its own (a crash, the OOM
    killer) the others are stopped too and the exit code says so, so that the supervisor
    above (systemd, Kubernetes) restarts a complete server instead of one quietly serving
    with fewer processes than it was given.
    """
    if settings.http_port == 0 or settings.grpc_port == 0:
        raise ConfigError("--workers needs fixed ports: give --http-port and --grpc-port")
    configure_logging(settings.log_format, settings.log_level)
    metrics_dir = tempfile.mkdtemp(prefix="ferry-metrics-")
    os.environ[_MULTIPROC_ENV] = metrics_dir
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    payload = settings.model_dump(mode="json")
    workers = [context.Process(target=_worker_main, args=(payload, i, ready),
                               name=f"ferry-worker-{i}") for i in range(settings.workers)]
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT,
                                                       signal.SIGHUP)}
    stopping = False

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = stopping or sig != signal.SIGHUP
        _signal_all(workers, sig)

    try:
        for sig in previous:
            signal.signal(sig, forward)
        for worker in workers:
            worker.start()
        ended: list[Any] = []
        if _await_workers(workers, ready, on_ready):
            # Sleeps until some worker exits: all of them after SIGTERM, or one by accident.
            ended = multiprocessing.connection.wait([w.sentinel for w in workers])
        if not stopping:
            _stop_survivors(workers, ended)
        for worker in workers:
            worker.join()
        return _exit_code(workers, stopping=stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(10)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop(_MULTIPROC_ENV, None)


def _stop_survivors(workers: list[Any], ended: list[Any]) -> None:
    """A worker exited unasked: say which, and stop the others."""
    for worker in workers:
        if worker.sentinel in ended or worker.exitcode is not None:
            # Its sentinel closes a moment before the process can be reaped: join it.
            worker.join(5)
            log.error("worker %s exited with code %s; stopping the others", worker.name,
                      worker.exitcode)
    _signal_all(workers, signal.SIGTERM)


def _exit_code(workers: list[Any], *, stopping: bool) -> int:
    """0 after a requested stop that every worker survived; else the first failure's code."""
    codes = [w.exitcode for w in workers if w.exitcode]
    if stopping and not codes:
        return 0
    return codes[0] if codes and codes[0] > 0 else 1  # killed by a signal: negative


def _signal_all(workers: list[Any], sig: int) -> None:
    for worker in workers:
        if worker.pid is not None and worker.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, sig)


def _await_workers(workers: list[Any], ready: Any,
                   on_ready: Callable[[Endpoints], None] | None) -> bool:
    """Wait until every worker reported ready, then call ``on_ready`` once.

    Returns False as soon as a worker exits before that (it failed to start, or a signal
    stopped the server while it started).
    """
    started = 0
    while started < len(workers):
        if any(w.exitcode is not None for w in workers):
            return False
        try:
            endpoints = ready.get(timeout=0.2)
        except queue.Empty:
            continue
        if "error" in endpoints:
            raise _worker_error(endpoints)
        started += 1
        if started == len(workers) and on_ready is not None:
            on_ready(Endpoints(**endpoints))
    return True


def _worker_error(report: dict[str, Any]) -> FerryError:
    """Rebuild the error a worker failed to start with, to report it as one process would."""
    kind = getattr(errors, str(report.get("kind")), None)
    if isinstance(kind, type) and issubclass(kind, FerryError):
        try:
            return kind(report["error"], hint=report.get("hint"))
        except TypeError:  # an error class with other arguments
            pass
    return ConfigError(f"a worker failed to start: {report['error']}", hint=report.get("hint"))


def _worker_main(payload: dict[str, Any], index: int, ready: Any) -> None:
    """One worker process: the same server, told to share its ports."""
    settings = ServerSettings.model_validate({**payload, "workers": payload["workers"]})

    def report(endpoints: Endpoints) -> None:
        ready.put({"host": endpoints.host, "http_port": endpoints.http_port,
                   "grpc_port": endpoints.grpc_port, "models": endpoints.models,
                   "default_model": endpoints.default_model, "tls": endpoints.tls})

    try:
        _event_loop_run(serve(settings, on_ready=report))
    except FerryError as exc:
        # Before it is ready this reaches the parent, which reports it once as a one-line
        # error (exit 2), as a single-process server would.
        ready.put({"error": exc.message, "hint": exc.hint, "kind": type(exc).__name__})
        raise SystemExit(1) from None
    except Exception as exc:
        log.error("worker %d failed", index, exc_info=exc)
        raise SystemExit(1) from None
