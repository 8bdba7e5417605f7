"""The standard ``grpc.health.v1`` service, answering from the engine's readiness.

Load balancers and Kubernetes' gRPC probes ask ``Check`` (or ``Watch``) for the overall
server (service ``""``) or for ``inference.GRPCInferenceService``. Both report SERVING
exactly when the engine is ready, so a server that is still warming up, or draining before
shutdown, is taken out of rotation. ``Check`` asks the engine each time; ``Watch`` streams
are fed by a poller that runs only while someone watches. A stopping server ends its
``Watch`` streams (:meth:`ReadinessHealthServicer.finish`) once they have seen NOT_SERVING,
so that an open stream does not hold grpc's stop until its grace runs out.

``Watch`` is ferry's own: grpcio-health-checking's keeps one condition per service name and
deletes it when any of its watchers leaves, after which the others never hear of a change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from grpc_health.v1 import health, health_pb2

from ferry.call import CallContext, internal_call
from ferry.engine import Engine
from ferry.errors import FerryError
from ferry.protocols.grpc.call import call_context
from ferry.protocols.grpc.errors import status_of

__all__ = ["ReadinessHealthServicer"]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

#: The context of the readiness checks the Watch poller makes for its watchers.
_POLLER = internal_call("grpc-health-watch")


class ReadinessHealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1 health whose status is the engine's readiness.

    Args:
        engine: the engine whose ``ready()`` decides SERVING vs NOT_SERVING.
        services: the service names to report besides the overall server (``""``).
        poll_interval: seconds between readiness checks while a ``Watch`` is open.
        client_certificates: the port requires client certificates (mTLS): each call
            context carries the verified certificate's common name.
    """

    def __init__(self, engine: Engine, services: Sequence[str], *,
                 poll_interval: float = 0.25, client_certificates: bool = False) -> None:
        super().__init__()
        self._engine = engine
        self._certificates = client_certificates
        self._services = ("", *services)
        self._poll_interval = poll_interval
        self._poller: asyncio.Task[None] | None = None
        self._watchers = 0
        self._finished = False  # finish(): Watch streams end after their current status
        # Set (and replaced by a fresh one) whenever a reported status changes.
        self._changed = asyncio.Event()
        for service in self._services:
            self._server_status[service] = NOT_SERVING

    async def refresh(self, call: CallContext = _POLLER) -> None:
        """Set every reported service to the engine's current readiness.

        ``call`` is the context of the client's call that asks (the poller's own when a
        ``Watch`` poller asks): readiness passes the engine's policy chain like every call.
        """
        status = SERVING if self._engine.ready(call) else NOT_SERVING
        if all(self._server_status.get(service) == status for service in self._services):
            return
        for service in self._services:
            await self.set(service, status)
        self._changed.set()
        self._changed = asyncio.Event()

    async def finish(self) -> None:
        """End every ``Watch`` stream, and any that starts later, after its current status.

        Called by a stopping server just before grpc's own stop, when the engine has been
        withdrawn: each watcher's last message is NOT_SERVING, then its call ends (OK).
        """
        self._finished = True
        try:
            await self.refresh()
        finally:
            self._changed.set()
            self._changed = asyncio.Event()

    async def Check(self, request: Any, context: Any) -> Any:
        """Answer the current status (NOT_FOUND for a service this server lacks)."""
        await self._refresh_for(context)
        return await super().Check(request, context)

    async def Watch(self, request: Any, context: Any) -> None:
        """Stream the service's status now and after each change while the client watches.

        A service this server lacks is ``SERVICE_UNKNOWN``, as the protocol asks.
        """
        await self._refresh_for(context)
        self._watchers += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            await self._stream(request.service, context)
        finally:
            self._watchers -= 1
            if not self._watchers and self._poller is not None:
                # Not awaited: a Watch that starts meanwhile must find no poller and start one.
                self._poller.cancel()
                self._poller = None

    async def _refresh_for(self, context: Any) -> None:
        try:
            await self.refresh(call_context(context, certificates=self._certificates))
        except FerryError as error:  # refused by a policy
            status = status_of(error)
            await context.abort(status.code, status.details, status.trailing_metadata)

    async def _stream(self, service: str, context: Any) -> None:
        last = None
        while True:
            changed = self._changed  # taken first: a change during the write is not missed
            status = self._server_status.get(service, SERVICE_UNKNOWN)
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if self._finished:
                return
            await changed.wait()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            await self.refresh()
