"""One Ray Serve replica: ferry's engine and REST app in a Ray actor.

This is a composition root, like :mod:`ferry.server`: each replica builds the same
:class:`~ferry.engine.Engine` (``security_policies`` of the same ``[security]`` settings,
the same per-model batching, admission and breakers) and the same Starlette app
(:func:`ferry.protocols.rest.app.create_app`) that ``ferry serve`` runs, and hands the app
to Ray Serve through ``@serve.ingress()``'s late-bound ``__serve_build_asgi_app__`` (Ray
2.60's public API), so Ray's HTTP proxy speaks ferry's whole REST surface: V2, /predict,
TF Serving, health, metrics.

``ray`` is imported inside :func:`replica_class` only: importing this module costs
nothing without the ``ray`` extra.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferry.settings import ServerSettings

__all__ = ["replica_class"]

log = logging.getLogger("ferry.ray")


def replica_class() -> Any:
    """The Ray Serve ingress class whose replicas each run one engine (imports ray)."""
    from ray import serve

    @serve.ingress()
    class FerryReplica:
        """Ray builds one per replica: load, hash-check and warm every chosen model."""

        # Ray Serve awaits an async constructor (its ingress wrapper does).
        async def __init__(self, settings: ServerSettings) -> None:  # type: ignore[misc]
            from ferry.engine import Engine
            from ferry.observability.logging import configure_logging
            from ferry.repository import Repository
            from ferry.server import security_policies, trusted_keys

            configure_logging(settings.log_format, settings.log_level)
            self._settings = settings
            repository = Repository(settings.repository,
                                    trusted_keys=trusted_keys(settings.security))
            policies, self._audit = security_policies(settings.security, host=settings.host,
                                                      rate_limit=settings.rate_limit)
            self._engine = Engine(
                repository, models=settings.models, defaults=settings.model_defaults,
                default_model=settings.default_model, drain_timeout=settings.drain_timeout,
                policies=policies, max_request_elements=settings.max_request_elements,
                default_timeout=settings.request_timeout, max_backlog=settings.max_backlog)
            await self._engine.start()
            log.info("ray replica serving %s", ", ".join(self._engine.served_models()))

        def __serve_build_asgi_app__(self) -> Any:
            from ferry.protocols.rest.app import create_app
            from ferry.protocols.rest.limits import HttpLimits

            settings = self._settings
            limits = HttpLimits(max_connections=settings.http_max_connections,
                                head_timeout=settings.http_head_timeout)
            return create_app(self._engine, max_body_bytes=settings.max_body_bytes,
                              limits=limits, console_on=settings.console)

        async def check_health(self) -> None:
            """Ray's health check: a replica whose engine is not ready is replaced."""
            from ferry.call import INTERNAL

            if not self._engine.ready(INTERNAL):
                raise RuntimeError("ferry engine is not ready")

        async def __del__(self) -> None:
            await self._engine.stop(timeout=self._settings.drain_timeout)
            if self._audit is not None:
                self._audit.close()

    return FerryReplica
