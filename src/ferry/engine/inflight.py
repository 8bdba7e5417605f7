"""Requests in flight on a served version, and the wait for them that retiring needs.

A version that is swapped out, unloaded or stopped must let the requests it already took
finish before it goes away. A plain model (:class:`~ferry.engine.served.ServedVersion`)
and a pipeline (:class:`~ferry.engine.pipelined.PipelineVersion`) count them the same way,
so the count and the bounded wait live here once.
"""

from __future__ import annotations

import asyncio
import logging

__all__ = ["InFlight"]

log = logging.getLogger("ferry.engine")


class InFlight:
    """A served version's count of requests in flight (a base class: ``name``, ``label``)."""

    name: str
    label: str

    def __init__(self) -> None:
        self.inflight = 0
        self._idle: asyncio.Event | None = None

    def _left(self) -> None:
        """One request left: wake :meth:`_drain` when it was the last one."""
        self.inflight -= 1
        if not self.inflight and self._idle is not None:
            self._idle.set()

    async def _drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the requests in flight; log any still running."""
        if self.inflight:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                log.warning("%s:%s retired with %d requests still in flight after %.0f s",
                            self.name, self.label, self.inflight, timeout)
