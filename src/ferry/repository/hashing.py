"""sha256 of files and of whole artifact directories, streamed so large models fit."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["hash_file", "hash_tree"]

_CHUNK = 1 << 20


def hash_file(path: Path) -> tuple[str, int]:
    """Return the hex sha256 and the size in bytes of one file."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def hash_tree(root: Path, *, exclude: frozenset[str] = frozenset()) -> dict[str, tuple[str, int]]:
    """Hash every regular file below ``root``, keyed by its POSIX path relative to ``root``.

    Symbolic links are never followed, since a link could point anywhere on the machine:
    each one is listed with the digest ``"symlink"`` so that no manifest can match it.
    """
    result: dict[str, tuple[str, int]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel in exclude:
            continue
        if path.is_symlink():
            result[rel] = ("symlink", 0)
        elif path.is_file():
            result[rel] = hash_file(path)
    return result
