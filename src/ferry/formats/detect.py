"""Which format is this file? Decided from its bytes, not its name; ``--format`` overrides."""

from __future__ import annotations

import zipfile
from pathlib import Path

from ferry.errors import ArtifactError, NotFoundError, UnsupportedFormatError
from ferry.formats.base import Importer, get_importer, importer_names, iter_importers
from ferry.pipelines.spec import looks_like_pipeline

__all__ = ["detect_format", "is_pipeline_file", "read_head", "zip_names"]


def read_head(path: Path, size: int = 64) -> bytes:
    """The first ``size`` bytes of a file; empty for a directory or an unreadable file."""
    if not path.is_file():
        return b""
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def zip_names(path: Path) -> list[str]:
    """Member names of a zip archive; empty if ``path`` is not a readable zip."""
    if not read_head(path, 4).startswith(b"PK\x03\x04"):
        return []
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):  # ValueError: undecodable member names
        return []


def is_pipeline_file(path: Path) -> bool:
    """Whether ``path`` is a pipeline file (``kind = "pipeline"`` in its first 4 KiB).

    ``ferry import`` stores such a file with :func:`ferry.pipelines.create_pipeline`
    instead of converting it: it names other versions rather than holding a model.
    """
    return looks_like_pipeline(read_head(path, 4096))


def detect_format(source: Path, requested: str | None = None) -> Importer:
    """Return the importer for ``source``: the requested one if it fits, else the detected.

    Raises:
        NotFoundError: ``source`` does not exist.
        ArtifactError: the file is empty.
        UnsupportedFormatError: no format matches, or the file is not of the requested one.
    """
    if not source.exists():
        raise NotFoundError(f"{str(source)!r} does not exist")
    if source.is_file() and source.stat().st_size == 0:
        raise ArtifactError(f"{source.name} is empty (0 bytes); the save did not complete")
    found = _first_match(source)
    if requested is not None:
        importer = get_importer(requested)
        if found is None or (found.format != requested and not importer.sniff(source)):
            looks = f"; it looks like a {found.format} model" if found else ""
            raise UnsupportedFormatError(
                f"{source.name} does not look like a {requested} model{looks}",
                hint="drop --format to detect it, or check that this is the file you meant",
            )
        return importer
    if found is None:
        if is_pipeline_file(source):
            raise UnsupportedFormatError(
                f"{source.name} is a pipeline file, not a model",
                hint=f"store it with: ferry import {source.name} --name NAME")
        raise UnsupportedFormatError(_unknown_message(source))
    return found


def _first_match(source: Path) -> Importer | None:
    for importer in iter_importers():
        if importer.sniff(source):
            return importer
    return None


def _unknown_message(source: Path) -> str:
    formats = ", ".join(importer_names())
    if source.is_dir():
        return (
            f"{source.name} is a directory, and no format ferry reads is one "
            f"(ferry reads {formats}); give the model file itself"
        )
    return (
        f"{source.name} is not a model file ferry recognises (ferry reads {formats}); "
        "it may be truncated or corrupted, or of another format"
    )
