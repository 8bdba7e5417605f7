"""Storing a pipeline: validate its file against the repository, commit it as a version.

The version's artifact is the pipeline file itself, byte for byte (``pipeline.toml``),
hashed in the manifest like any artifact; the manifest says ``kind = "pipeline"``, records
the derived signature (so ``ferry show`` and the servers' metadata show it) and, in its
notes, which version of each member the file was checked against.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

from ferry.errors import ArtifactError, FerryError, NotFoundError
from ferry.pipelines.graph import MAX_DEPTH, Graph, Member, build_graph
from ferry.pipelines.spec import KIND, parse_pipeline, read_pipeline
from ferry.repository import (
    Manifest,
    ModelRef,
    Repository,
    SourceInfo,
    check_model_name,
    now_utc,
)

__all__ = ["ARTIFACT", "PLATFORM", "RUNTIME", "create_pipeline", "repository_resolver",
           "stored_graph"]

#: The artifact's name in a pipeline version's directory.
ARTIFACT = "pipeline.toml"
#: The manifest's ``runtime`` and ``platform`` of a pipeline version.
RUNTIME = "pipeline"
PLATFORM = "ferry_pipeline"


def repository_resolver(repo: Repository) -> Callable[[str], Member]:
    """A ``resolve`` for :func:`~ferry.pipelines.graph.build_graph` over a repository.

    A member pipeline's depth is read from its own file, recursively (bounded: a loop of
    pipelines through their latest versions counts as too deep, never as endless).
    """

    def resolve(text: str, level: int = 0) -> Member:
        try:
            ref = ModelRef.parse(text)
        except FerryError as exc:
            raise NotFoundError(f"{text!r} is not a model reference: {exc.message}") from None
        manifest = repo.manifest(ref)
        depth = 0
        if manifest.kind == KIND:
            depth = 1 + _member_depth(manifest, level)
        labels = tuple(manifest.labels) if manifest.labels else None
        return Member(manifest.name, manifest.version, ref.version is not None,
                      manifest.signature, labels, depth)

    def _member_depth(manifest: Manifest, level: int) -> int:
        if level > MAX_DEPTH:
            return MAX_DEPTH + 1
        path = repo.root / manifest.name / str(manifest.version) / manifest.artifact
        spec = read_pipeline(path)
        return max((resolve(m, level + 1).depth for m in spec.members()), default=0)

    return resolve


def stored_graph(repo: Repository, manifest: Manifest, artifact: Path) -> Graph:
    """The graph of a stored pipeline version, checked against the repository as it is now.

    Raises:
        ArtifactError, NotFoundError: as :func:`~ferry.pipelines.graph.build_graph`, or
            the derived signature is no longer the one recorded at import.
    """
    where = f"pipeline {manifest.name}:{manifest.version}"
    spec = parse_pipeline(artifact.read_bytes(), where)
    graph = build_graph(spec, repository_resolver(repo), where=where)
    check_signature(graph, manifest, where)
    return graph


def check_signature(graph: Graph, manifest: Manifest, where: str) -> None:
    """Refuse a graph whose derived signature differs from the one recorded at import."""
    if graph.signature != manifest.signature:
        raise ArtifactError(
            f"{where}: its members changed since it was imported: its signature would now "
            f"be {_describe(graph)} instead of the recorded one",
            hint="pin the members (name:version) or import the pipeline again")


def _describe(graph: Graph) -> str:
    specs = [*graph.signature.inputs, *graph.signature.outputs]
    return ", ".join(f"{s.name} {s.describe()}" for s in specs)


def create_pipeline(repo: Repository, source: Path, name: str, *,
                    check: Callable[[Graph], list[str]] | None = None
                    ) -> tuple[Manifest, Graph]:
    """Validate the pipeline file ``source`` and commit it as the next version of ``name``.

    Nothing is written unless every check passes. ``check`` runs on the validated graph
    before the commit (an accuracy report on an eval set, say: ferry.pipelines.evaluation);
    the lines it returns are kept in the manifest's notes.

    Returns:
        The committed manifest and the validated graph.

    Raises:
        ArtifactError: the file is invalid (a cycle, mismatched datatypes or shapes along an
            edge, an unknown transform, nesting deeper than the limit...).
        NotFoundError: a step names a model or custom step that does not exist.
    """
    check_model_name(name)
    spec = read_pipeline(source)
    where = source.name
    graph = build_graph(spec, repository_resolver(repo), where=where)
    if name in {m.name for m in graph.members}:
        raise ArtifactError(f"{where}: the pipeline is named {name!r} like one of its own "
                            "steps' models; give it another name")
    raw = source.read_bytes()
    notes = [f"step {step.id}: {_step_note(step.spec.kind, step.spec.target, step.member)}"
             for level in graph.levels for step in level]
    if spec.description:
        notes.insert(0, spec.description)
    if check is not None:
        notes.extend(check(graph))
    with repo.stage() as workdir:
        shutil.copyfile(source, workdir / ARTIFACT)
        draft = Manifest(
            name=name, version=0, format=KIND, runtime=RUNTIME, platform=PLATFORM,
            artifact=ARTIFACT, signature=graph.signature, files={},
            source=SourceInfo(filename=source.name, sha256=hashlib.sha256(raw).hexdigest(),
                              size=len(raw), format=KIND),
            created=now_utc(), labels=graph.labels, notes=notes, kind=KIND,
        )
        return repo.commit(workdir, draft), graph


def _step_note(kind: str, target: str, member: Member | None) -> str:
    if member is None:
        return f"{kind} {target}"
    follows = f"pinned to version {member.version}" if member.pinned \
        else f"follows the latest version ({member.version} at import)"
    nested = f", a pipeline {member.depth} deep" if member.depth else ""
    return f"model {member.name}, {follows}{nested}"

