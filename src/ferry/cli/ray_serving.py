"""``ferry serve --ray``: deploy the repository on Ray Serve (:mod:`ferry.ray`).

With ``--address`` the application is deployed to that cluster and the command returns: the
cluster keeps serving it (``serve status``, ``serve shutdown`` manage it from then on).
Without it a local Ray instance is started and serves until Ctrl-C or SIGTERM, then the
application and the instance are shut down.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

from ferry.cli.console import out_console
from ferry.errors import ConfigError

if TYPE_CHECKING:
    from ferry.settings import ServerSettings

__all__ = ["serve_on_ray"]


def serve_on_ray(settings: ServerSettings, *, ray: bool, address: str | None,
                 replicas: int | None) -> None:
    """Deploy ``settings``' models on Ray Serve; wait for a signal unless ``address``."""
    if not ray:
        raise ConfigError("--address and --ray-replicas apply to Ray Serve only",
                          hint="add --ray: ferry serve REPO --ray --address auto")
    if settings.workers > 1:
        raise ConfigError("--workers does not apply with --ray: Ray runs the replicas",
                          hint="use --ray-replicas N instead")
    from ferry.ray import deploy

    deployment = deploy(settings=settings, address=address, num_replicas=replicas)
    scaling = (f"{replicas} replica(s)" if replicas is not None
               else "autoscaling 1-4 replicas")
    out_console.print(
        f"Ray Serve is serving [bold]{', '.join(deployment.models)}[/] from "
        f"{settings.repository} ({scaling}, application {deployment.name!r})\n"
        f"  REST  {deployment.url}   (V2: /v2/models/NAME/infer, seed: /predict, "
        "through Ray's HTTP proxy; no gRPC)", highlight=False)
    if address is not None:
        out_console.print("The cluster keeps serving it: `serve status` shows it, "
                          f"`serve delete {deployment.name}` removes it.", highlight=False)
        return
    _wait_for_signal()
    import ray as ray_module
    from ray import serve

    serve.shutdown()  # type: ignore[no-untyped-call]
    ray_module.shutdown()


def _wait_for_signal() -> None:
    out_console.print("Ctrl-C stops it (and the local Ray instance).", highlight=False)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(1.0):
        pass
