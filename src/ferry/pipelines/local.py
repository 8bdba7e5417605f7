"""A stored pipeline run in-process: every member loaded with its runtime, no server.

:func:`load_pipeline` is the loader of ``runtime = "pipeline"`` versions for
:mod:`ferry.local` (``ferry.load``) and what ``ferry pipeline eval`` runs: it opens each
member version (its files checked against its manifest), loads it, and returns a
:class:`PipelineRuntime` that answers ``predict`` through
:func:`~ferry.pipelines.executor.run_graph_sync`. The members are the versions the
repository holds at load time (latest ones resolved then).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import ArtifactError
from ferry.pipelines.create import stored_graph
from ferry.pipelines.executor import Observe, call_custom, run_graph_sync
from ferry.pipelines.graph import Graph, Step
from ferry.pipelines.spec import KIND
from ferry.repository import Repository, StoredModel
from ferry.runtimes import Arrays, Runtime, RuntimeOptions, load_runtime
from ferry.signature import Signature

__all__ = ["PipelineRuntime", "load_members", "load_pipeline"]


class PipelineRuntime(Runtime):
    """A pipeline whose members are loaded runtimes; thread-safe as its members are."""

    name = "pipeline"

    def __init__(self, graph: Graph, members: dict[str, Runtime]) -> None:
        super().__init__(graph.signature)
        self.graph = graph
        self.members = members

    @classmethod
    def load(cls, artifact: Path, signature: Signature, options: RuntimeOptions) -> Runtime:
        """Not loadable from its file alone: its steps are other versions (load_pipeline)."""
        raise ArtifactError("a pipeline version is loaded with its repository "
                            "(ferry.pipelines.load_pipeline), not from its file alone")

    @property
    def supports_batching(self) -> bool:
        """Pipelines are not batched as a whole; their members batch on their own."""
        return False

    def predict(self, inputs: Mapping[str, np.ndarray[Any, Any]],
                outputs: Sequence[str] | None = None, *,
                observe: Observe | None = None) -> Arrays:
        """Run the pipeline on validated inputs (``observe`` is told each step's time)."""
        result = run_graph_sync(self.graph, dict(inputs), self.run_step, observe=observe)
        if outputs is not None:
            return {name: result[name] for name in outputs}
        return result

    def run_step(self, step: Step, arrays: Arrays) -> Arrays:
        """Run one model or custom step (the executor's callable)."""
        if step.custom is not None:
            return call_custom(step, arrays)
        assert step.member is not None
        step.member.signature.check_inputs(arrays)
        return self.members[step.id].predict(arrays)

    def close(self) -> None:
        """Close every member runtime."""
        for runtime in self.members.values():
            runtime.close()


def load_pipeline(repository: Repository, stored: StoredModel,
                  options: RuntimeOptions | None = None) -> Runtime:
    """Load a stored pipeline version and its members (the loader ``ferry.load`` uses).

    Raises:
        ArtifactError, NotFoundError, IntegrityError: the pipeline or a member is invalid,
            missing, or fails its hash check.
    """
    graph = stored_graph(repository, stored.manifest, stored.artifact_path)
    return load_members(repository, graph, options)


def load_members(repository: Repository, graph: Graph,
                 options: RuntimeOptions | None = None) -> PipelineRuntime:
    """Load the member versions ``graph`` was validated against, as a runnable pipeline.

    Raises:
        ArtifactError, NotFoundError, IntegrityError: a member is missing, invalid, or fails
            its hash check.
    """
    options = options or RuntimeOptions()
    members: dict[str, Runtime] = {}
    try:
        for step in graph.steps.values():
            if step.member is None:
                continue
            member = repository.open(step.member.ref)
            manifest = member.manifest
            if manifest.kind == KIND:
                members[step.id] = load_pipeline(repository, member, options)
            else:
                members[step.id] = load_runtime(manifest.runtime, member.artifact_path,
                                                manifest.signature, options)
    except BaseException:
        for runtime in members.values():
            runtime.close()
        raise
    return PipelineRuntime(graph, members)
