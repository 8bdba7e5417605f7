"""Names and paths of the repository: ``<root>/<model>/<version>/``.

Model names become directory names, so they are checked before any path is built: no
separators, no ``..``, no hidden names, nothing a shell or URL would need to quote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ferry.errors import InputError, quote_name

__all__ = ["MANIFEST_NAME", "SIGNATURE_NAME", "ModelRef", "check_model_name", "parse_version"]

MANIFEST_NAME = "manifest.json"
#: Signatures over a version's manifest (repository/signing.py): beside it, not listed in it.
SIGNATURE_NAME = "manifest.sig"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,17}$")


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a valid model name.

    Raises:
        InputError: the name is empty, too long, or has characters other than letters,
            digits, ``_``, ``.`` and ``-`` (it must start with a letter or digit).
    """
    if not _NAME.fullmatch(name) or ".." in name:
        raise InputError(
            f"invalid model name {quote_name(name)}: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (no path separators or '..')"
        )
    return name


def parse_version(text: str | int) -> int:
    """Parse a version number: a positive integer.

    Raises:
        InputError: not a positive integer.
    """
    value = str(text)
    if not _VERSION.fullmatch(value):
        raise InputError(f"invalid version {value!r}: versions are positive integers (1, 2, ...)")
    return int(value)


@dataclass(frozen=True)
class ModelRef:
    """A model name with an optional version: ``digits`` or ``digits:3``."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse ``NAME`` or ``NAME:VERSION`` (``NAME:latest`` means no specific version).

        Raises:
            InputError: the name or version is invalid.
        """
        name, sep, version = text.partition(":")
        check_model_name(name)
        if not sep or version == "latest":
            return cls(name)
        return cls(name, parse_version(version))

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"
