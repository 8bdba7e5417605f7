"""Which model versions a deployment carries: ``NAME[:V]`` resolved to stored manifests.

A deployment pins versions: ``digits`` means the newest version *when the image or the
manifests are made*, written down as ``digits:3``, so a later import does not change what
an already built image or an applied Deployment serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ferry.errors import InputError
from ferry.repository import Repository
from ferry.repository.layout import ModelRef
from ferry.repository.manifest import Manifest
from ferry.repository.store import StoredModel

__all__ = ["Selection", "select_models"]


@dataclass(frozen=True)
class Selection:
    """The repository and the verified versions a deployment carries, in order."""

    repository: Repository
    versions: tuple[StoredModel, ...]

    @property
    def manifests(self) -> tuple[Manifest, ...]:
        """The versions' manifests."""
        return tuple(stored.manifest for stored in self.versions)

    @property
    def refs(self) -> list[str]:
        """The pinned references, ``name:version``, as ``ferry serve --models`` takes them."""
        return [f"{m.name}:{m.version}" for m in self.manifests]


def select_models(repository: Repository, refs: Sequence[str]) -> Selection:
    """Resolve ``refs`` (``NAME`` or ``NAME:V``) against ``repository``; hash-check each.

    Raises:
        InputError: no reference given, a name or version is invalid, or one model is
            named twice.
        NotFoundError: a model or version is not in the repository.
        IntegrityError: a manifest cannot be read, or a file does not match it.
        UntrustedArtifactError: the repository requires signatures and one is missing.
    """
    if not refs:
        raise InputError("name at least one model to deploy: NAME or NAME:VERSION",
                         hint=f"the repository {repository.root} holds: "
                         f"{', '.join(repository.models()) or 'no models'}")
    versions: list[StoredModel] = []
    seen: set[str] = set()
    for text in refs:
        ref = ModelRef.parse(text)
        if ref.name in seen:
            raise InputError(f"model {ref.name!r} is named twice; a deployment serves one "
                             "version of each model")
        seen.add(ref.name)
        versions.append(repository.open(ModelRef(ref.name, repository.resolve(ref))))
    return Selection(repository, tuple(versions))
