"""Pipelines and ensembles: a version that runs other versions and built-in transforms.

A pipeline file (:mod:`ferry.pipelines.spec`) is validated against the repository
(:mod:`ferry.pipelines.graph`), stored as a hash-checked version whose artifact is the file
(:mod:`ferry.pipelines.create`), and run by one executor (:mod:`ferry.pipelines.executor`)
given how to run each model step: the engine's own path when served, loaded runtimes
in-process (:mod:`ferry.pipelines.local`).

This package imports the repository, the runtimes and the leaves only (no engine, web or
gRPC library, no framework).
"""

from ferry.pipelines.create import create_pipeline, repository_resolver, stored_graph
from ferry.pipelines.executor import call_custom, run_graph, run_graph_sync
from ferry.pipelines.graph import (
    ENTRY_POINT_GROUP,
    MAX_DEPTH,
    CustomStep,
    Graph,
    Member,
    Step,
    build_graph,
)
from ferry.pipelines.spec import KIND, PipelineSpec, looks_like_pipeline, parse_pipeline
from ferry.pipelines.transforms import TRANSFORMS

__all__ = [
    "ENTRY_POINT_GROUP",
    "KIND",
    "MAX_DEPTH",
    "TRANSFORMS",
    "CustomStep",
    "Graph",
    "Member",
    "PipelineSpec",
    "Step",
    "build_graph",
    "call_custom",
    "create_pipeline",
    "looks_like_pipeline",
    "parse_pipeline",
    "repository_resolver",
    "run_graph",
    "run_graph_sync",
    "stored_graph",
]
