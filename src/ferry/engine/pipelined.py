"""A served pipeline version: no runtime of its own; its steps run on served members.

The snapshot of a pipeline model holds :class:`PipelineVersion` objects beside the
:class:`~ferry.engine.served.ServedVersion` objects of ordinary models, and the engine's
``_infer`` calls ``infer`` on either. A pipeline request runs its graph with
:func:`ferry.pipelines.run_graph`; each model step goes back through the engine's own path
for its member (validation, admission, batching, breaker) by the ``run_member`` callable the
engine gives, and each custom step runs on a worker thread. A member that follows its
latest version is looked up when its step starts, in the same loop turn as it is admitted,
so a hot swap of the member takes effect for the pipeline at one instant, and never fails a
request that is already past that step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ferry.engine.config import ModelConfig
from ferry.engine.inflight import InFlight
from ferry.observability.metrics import Metrics
from ferry.pipelines import Graph, Step, call_custom, run_graph
from ferry.pipelines.spec import PipelineSpec
from ferry.repository import Manifest
from ferry.runtimes import Arrays

__all__ = ["PipelineVersion", "RunMember"]


#: How a model step runs: ``(model, version or None for its latest, inputs, deadline)``.
RunMember = Callable[[str, int | None, Arrays, float | None], Awaitable[Arrays]]


class PipelineVersion(InFlight):
    """One served version of a pipeline model (see the module's docstring).

    Made off the event loop from the stored version (``spec``: its parsed file); the engine
    then links it (:meth:`link`) once its members are served, and attaches it.
    """

    def __init__(self, manifest: Manifest, spec: PipelineSpec, config: ModelConfig,
                 metrics: Metrics) -> None:
        super().__init__()
        self.manifest = manifest
        self.spec = spec
        self.name = manifest.name
        self.version = manifest.version
        self.label = str(manifest.version)
        self.signature = manifest.signature
        self.config = config
        self.output_types = {s.name: s.datatype for s in self.signature.outputs}
        self.load_seconds = 0.0
        self.depth = 1
        self._metrics = metrics
        self._graph: Graph | None = None
        self._run_member: RunMember | None = None
        self._step_metrics: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle

    def link(self, graph: Graph, run_member: RunMember) -> None:
        """Use ``graph`` (validated against the served members) and run members so."""
        self._graph = graph
        self.depth = graph.depth
        self._run_member = run_member
        self._step_metrics = {sid: self._metrics.stage_child(f"step:{sid}", self.name)
                              for sid in graph.steps}

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start taking requests (the pipeline has no queue of its own: its members do)."""
        del loop
        self._metrics.model_loaded(self.name, self.label, self.load_seconds)

    async def retire(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for in-flight requests; there is nothing to close."""
        await self._drain(timeout)

    def close(self) -> None:
        """Nothing to free: the members are served (and closed) as models of their own."""

    @property
    def queued(self) -> int:
        """A pipeline queues nothing itself; its requests wait in their members' queues."""
        return 0

    # ------------------------------------------------------------------ requests

    async def infer(self, arrays: Arrays, outputs: tuple[str, ...] | None,
                    deadline: float | None) -> Arrays:
        """Run the graph on validated inputs; independent steps run concurrently.

        Raises:
            FerryError: a step failed; the message names the step.
        """
        graph, run_member = self._graph, self._run_member
        assert graph is not None and run_member is not None, "link() first"

        async def run_step(step: Step, inputs: Arrays) -> Arrays:
            member = step.member
            if member is not None:
                version = member.version if member.pinned else None
                return await run_member(member.name, version, inputs, deadline)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, call_custom, step, inputs)

        self.inflight += 1
        try:
            result = await run_graph(graph, arrays, run_step, observe=self._observe)
        finally:
            self._left()
        if outputs is not None:
            return {name: result[name] for name in outputs}
        return result

    def _observe(self, step: str, seconds: float) -> None:
        child = self._step_metrics.get(step)
        if child is not None:
            child.observe(seconds)

