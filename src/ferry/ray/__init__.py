"""Ray Serve: ferry's engine as a Ray Serve deployment (``ferry serve REPO --ray``).

:func:`deploy` runs one Ray Serve application, ``ferry`` by default, whose replicas each
load the chosen models into ferry's own engine and serve ferry's REST app
(:mod:`ferry.ray.replica`). Ray's HTTP proxy routes to them, so a Ray cluster answers the
same V2 REST requests (and ``/predict``, TF Serving, health, metrics) as ``ferry serve``.

- **Autoscaling** is Ray's: ``autoscaling_config`` between ``min_replicas`` and
  ``max_replicas`` replicas, aiming at ``target_ongoing_requests`` in flight per replica;
  or a fixed ``num_replicas``.
- **Batching** is ferry's: each replica's engine batches concurrent requests per model
  (the model's ``config.toml``: ``max_batch_size``, ``max_queue_delay_ms``), as in
  ``ferry serve``. ``max_ongoing_requests`` lets that many requests into one replica at
  once so its batcher sees them together (Ray's ``@serve.batch`` is not used: the engine's
  batcher already forms batches per model and version).
- **Fault tolerance** is Ray's: a replica that dies, or whose engine reports not ready
  (``check_health``), is replaced by the Serve controller.
- **gRPC** is not offered through Ray: Ray's gRPC proxy calls deployment methods with
  user-defined protobuf services, which ferry's ``inference.GRPCInferenceService``
  servicer (grpc.aio) does not plug into. Use ``ferry serve`` (or its Kubernetes
  deployment) for gRPC.

The repository path must be readable by every Ray node (one machine, or a shared
filesystem). ``ray`` is imported lazily: without the ``ray`` extra, :func:`deploy` raises
:class:`~ferry.errors.MissingDependencyError` naming ``pip install 'ferry[ray]'``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferry.errors import ConfigError, MissingDependencyError, NotFoundError
from ferry.repository import Repository

if TYPE_CHECKING:
    from ferry.settings import ServerSettings

__all__ = ["RayDeployment", "absolute_paths", "deploy"]

#: The application and deployment name Ray shows (``serve status``).
DEFAULT_NAME = "ferry"


@dataclass(frozen=True)
class RayDeployment:
    """Where a deployed application answers."""

    name: str
    url: str
    models: list[str]


def _require_ray() -> None:
    if importlib.util.find_spec("ray") is None or \
            importlib.util.find_spec("ray.serve") is None:
        raise MissingDependencyError("Ray Serve (ferry serve --ray)", "ray")


def deploy(repository: str | Path | None = None, *, models: Sequence[str] | None = None,
           settings: ServerSettings | None = None, name: str = DEFAULT_NAME,
           address: str | None = None, host: str | None = None, port: int | None = None,
           route_prefix: str = "/", num_replicas: int | None = None,
           min_replicas: int = 1, max_replicas: int = 4,
           target_ongoing_requests: float = 32.0, max_ongoing_requests: int = 256,
           num_cpus: float = 1.0) -> RayDeployment:
    """Deploy ferry's engine on Ray Serve and wait until every replica is ready.

    Args:
        repository: the model repository (default: ``settings.repository``).
        models: which models to serve (``name`` or ``name:version``; default: the
            settings', else all).
        settings: the server settings every replica builds its engine from (security,
            limits, defaults); ``load_settings()`` (file-less: FERRY_* and defaults) when
            omitted.
        name: the Ray Serve application (and deployment) name.
        address: the Ray cluster to join (``ray.init(address=...)``: ``auto``,
            ``ray://host:10001``, ...) when Ray is not initialized yet; None starts a new
            local Ray instance (``address="local"``), never one found running.
        host: where Ray's HTTP proxy listens when this call starts Serve (default: the
            settings' ``host``). A Serve instance already running keeps its own.
        port: the proxy's port when this call starts Serve (default: ``http_port``).
        route_prefix: the path the application is mounted under (``/``: ferry's own paths).
        num_replicas: a fixed replica count; None autoscales (Ray's autoscaling_config).
        min_replicas: the fewest replicas autoscaling keeps.
        max_replicas: the most replicas autoscaling starts.
        target_ongoing_requests: the requests in flight per replica autoscaling aims at.
        max_ongoing_requests: requests one replica takes at once (its engine batches them).
        num_cpus: CPUs Ray reserves for each replica.

    Raises:
        MissingDependencyError: ray is not installed (``pip install 'ferry[ray]'``).
        ConfigError: the repository does not exist, a count is out of range, or the
            settings ask for TLS.
        NotFoundError: a chosen model is not in the repository.
        RuntimeError: Ray could not start the application (Ray's own message).
    """
    from ferry.settings import load_settings

    settings = settings if settings is not None else load_settings()
    update: dict[str, Any] = {}
    if repository is not None:
        update["repository"] = Path(repository)
    if models is not None:
        update["models"] = list(models)
    if update:
        settings = settings.model_copy(update=update)
    settings = absolute_paths(settings)
    _check_counts(num_replicas, min_replicas, max_replicas, max_ongoing_requests,
                  target_ongoing_requests)
    if settings.security.tls_cert_file is not None:
        raise ConfigError("TLS (--tls-cert, [security] tls_cert_file) does not apply on Ray: "
                          "Ray's HTTP proxy takes the connections, without TLS",
                          hint="put TLS in front of Ray's proxy (an ingress or load balancer)")
    chosen = _check_repository(Repository(settings.repository), settings.models)
    _require_ray()

    import ray
    from ray import serve

    from ferry.ray.replica import replica_class

    if not ray.is_initialized():
        if address is None:  # always a new local instance (never one found running)
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        else:  # an existing cluster keeps its own settings
            ray.init(address=address, log_to_driver=False)
    http_host = host if host is not None else settings.host
    http_port = port if port is not None else settings.http_port
    serve.start(http_options={"host": http_host, "port": http_port})
    options: dict[str, Any] = {
        "name": name,
        "max_ongoing_requests": max_ongoing_requests,
        "ray_actor_options": {"num_cpus": num_cpus},
    }
    if num_replicas is not None:
        options["num_replicas"] = num_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": min_replicas, "max_replicas": max_replicas,
            "target_ongoing_requests": target_ongoing_requests,
        }
    deployment = serve.deployment(**options)(replica_class())
    serve.run(deployment.bind(settings), name=name, route_prefix=route_prefix)
    shown = f"[{http_host}]" if ":" in http_host else http_host
    url = f"http://{shown}:{http_port}{route_prefix.rstrip('/')}"
    return RayDeployment(name=name, url=url, models=chosen)


def absolute_paths(settings: ServerSettings) -> ServerSettings:
    """``settings`` with the repository and the ``[security]`` files made absolute.

    Replicas run in Ray's worker processes, whose working directory is not this one: a
    relative path must mean what it means here.
    """
    security = settings.security
    files: dict[str, Any] = {
        name: Path(value).absolute() for name, value in security if isinstance(value, Path)}
    if security.audit_log not in (None, "-"):
        files["audit_log"] = str(Path(security.audit_log).absolute())
    repository = Path(settings.repository)
    if repository.parts and ":" not in repository.parts[0]:  # a local path, not a URL
        repository = repository.absolute()
    return settings.model_copy(update={
        "repository": repository, "security": security.model_copy(update=files)})


def _check_counts(num_replicas: int | None, min_replicas: int, max_replicas: int,
                  max_ongoing: int, target: float) -> None:
    if num_replicas is not None and num_replicas < 1:
        raise ConfigError(f"num_replicas must be at least 1, got {num_replicas}")
    if min_replicas < 0 or max_replicas < 1 or min_replicas > max_replicas:
        raise ConfigError(f"replicas: need 0 <= min_replicas <= max_replicas and "
                          f"max_replicas >= 1, got min {min_replicas}, max {max_replicas}")
    if max_ongoing < 1:
        raise ConfigError(f"max_ongoing_requests must be at least 1, got {max_ongoing}")
    if target <= 0:
        raise ConfigError(f"target_ongoing_requests must be above 0, got {target}")


def _check_repository(repository: Repository, selection: Sequence[str]) -> list[str]:
    """The models to serve, checked here before Ray starts anything."""
    if not repository.root.is_dir():
        raise ConfigError(f"repository {str(repository.root)!r} does not exist",
                          hint="import a model first (ferry import FILE --name NAME)")
    known = repository.models()
    names = [item.split(":", 1)[0] for item in selection] or known
    if not names:
        raise ConfigError(f"repository {str(repository.root)!r} holds no model to serve",
                          hint="import one first: ferry import my_model.h5 --name digits")
    missing = [item for item in names if item not in known]
    if missing:
        raise NotFoundError(f"model {missing[0]!r} is not in repository "
                            f"{str(repository.root)!r} (it holds: {', '.join(known) or 'none'})")
    return names
