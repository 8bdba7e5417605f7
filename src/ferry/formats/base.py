"""The ``Importer`` interface and the registry of source formats.

An importer takes a model file as a data scientist saved it, loads it with the framework's
own *safe* loader, writes a servable artifact (ONNX where possible) into a staging
directory, and hands back a :class:`Converted` that says how to run the artifact and how to
run the source model, so that :mod:`ferry.formats.pipeline` can prove they agree.

Importer modules import their framework inside functions only: the registry below holds
module paths, so detecting a format or listing formats never imports TensorFlow or torch.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from ferry.errors import MissingDependencyError, UnsupportedFormatError
from ferry.runtimes import Arrays
from ferry.signature import Signature

__all__ = [
    "Converted",
    "ImportOptions",
    "Importer",
    "NullProgress",
    "Progress",
    "Reference",
    "ReferenceUnavailableError",
    "get_importer",
    "importer_names",
    "iter_importers",
    "register_importer",
]

#: The source framework's own predict: named inputs in, named outputs out.
Reference = Callable[[Arrays], Arrays]


class ReferenceUnavailableError(Exception):
    """Raised by a :data:`Reference` that cannot run this model after all.

    The parity check then runs the artifact alone and records why in the manifest. Not a
    :class:`~ferry.errors.FerryError`: it never reaches a user.
    """


class Progress(Protocol):
    """Where long steps report themselves (the CLI shows a spinner; tests pass nothing)."""

    def step(self, text: str) -> contextlib.AbstractContextManager[None]:
        """Enter while the step named ``text`` runs."""
        ...  # pragma: no cover - protocol


class NullProgress:
    """A :class:`Progress` that shows nothing."""

    def step(self, text: str) -> contextlib.AbstractContextManager[None]:
        """Do nothing while the step runs."""
        return contextlib.nullcontext()


@dataclass(frozen=True)
class ImportOptions:
    """What the user said about an import beyond the file and the name.

    ``samples`` are the parity inputs: named arrays, one array for a single-input model, or
    a ``.npy``/``.npz``/``.json`` file read once the signature is known.

    ``native`` asks for the source framework's own runtime instead of an ONNX conversion
    (formats whose importer declares a ``native_runtime`` only).
    """

    samples: Arrays | np.ndarray[Any, Any] | Path | None = None
    samples_origin: str | None = None
    sample_count: int = 16
    seed: int = 0
    tolerance: float | None = None
    labels: list[str] | None = None
    trust_sha256: str | None = None
    opset: int | None = None
    native: bool = False


@dataclass
class Converted:
    """What an importer wrote, and how to check it against the source."""

    artifact: str
    signature: Signature
    runtime: str = "onnxruntime"
    platform: str = "onnx_onnxv1"
    converter: str | None = None
    framework: str | None = None
    reference: Reference | None = None
    reference_name: str | None = None
    labels: list[str] | None = None
    #: Output tensor -> the source model's own name for it (the manifest's source_names).
    source_names: dict[str, str] = field(default_factory=dict)
    tolerance: float = 1e-4
    rtol: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: Parity inputs the importer drew from the model itself (a fitted encoder's categories,
    #: say), used when the user gave none: random strings would not be valid categories.
    samples: Arrays | None = None
    samples_origin: str | None = None
    #: Tree models: rows at every split threshold and at its float32 neighbours, checked by
    #: the parity step as well as the samples (whatever the samples are); the manifest's
    #: parity report counts them.
    threshold_rows: Arrays | None = None


class Importer(abc.ABC):
    """One source format. Subclasses set the class attributes and implement two methods."""

    #: Short name used by ``--format`` and stored in manifests.
    format: ClassVar[str]
    #: One line for ``ferry formats``.
    description: ClassVar[str]
    #: What turns it into the artifact (``tf2onnx via keras.Model.export``).
    converter: ClassVar[str]
    #: The ferry extra that installs its dependencies, or None if the core suffices.
    extra: ClassVar[str | None] = None
    #: Top-level modules that must be importable for this format.
    requires: ClassVar[tuple[str, ...]] = ()
    #: The runtime that serves this format unconverted (``--native``, and the fallback when
    #: conversion fails or misses parity), or None when the format is always converted.
    native_runtime: ClassVar[str | None] = None

    def available(self) -> bool:
        """Whether the framework modules this format needs are installed."""
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def ensure_available(self) -> None:
        """Raise :class:`MissingDependencyError` naming the extra when it is not installed."""
        if not self.available():
            raise MissingDependencyError(f"importing {self.format} models", self.extra or "all")

    @abc.abstractmethod
    def sniff(self, path: Path) -> bool:
        """Whether ``path`` looks like this format, judged from its bytes, cheaply.

        Must not import the framework; may read a few bytes or a zip directory.
        """

    @abc.abstractmethod
    def convert(self, source: Path, workdir: Path, options: ImportOptions) -> Converted:
        """Load ``source`` safely and write the artifact into ``workdir``.

        Raises:
            ArtifactError: the file cannot be loaded safely or converted; the message says
                why and what to do instead.
        """


# Order matters for detection: the first importer whose sniff() matches wins. torch comes
# first: it recognises its own zip layouts and legacy pickles precisely (and refuses them
# with torch-specific advice), before any generic pickle importer could claim them.
# savedmodel is a directory, or a saved_model.pb whose bytes look like ONNX's.
_IMPORTERS: dict[str, str] = {
    "torch": "ferry.formats.torch:TorchImporter",
    "savedmodel": "ferry.formats.savedmodel:SavedModelImporter",
    "keras": "ferry.formats.keras:KerasImporter",
    "sklearn": "ferry.formats.sklearn:SklearnImporter",
    "xgboost": "ferry.formats.xgboost:XGBoostImporter",
    "lightgbm": "ferry.formats.lightgbm:LightGBMImporter",
    "pmml": "ferry.formats.pmml:PmmlImporter",
    "onnx": "ferry.formats.onnx:OnnxImporter",
}
_LOADED: dict[str, Importer] = {}


def register_importer(name: str, target: str) -> None:
    """Register an importer as ``"package.module:Class"`` under its format name."""
    _IMPORTERS[name] = target
    _LOADED.pop(name, None)


def importer_names() -> list[str]:
    """Registered format names, in detection order."""
    return list(_IMPORTERS)


def get_importer(name: str) -> Importer:
    """Return the importer of a format (its module holds no framework import).

    Raises:
        UnsupportedFormatError: no format of that name (the message lists them).
    """
    if name not in _IMPORTERS:
        raise UnsupportedFormatError(
            f"unknown format {name!r}; ferry reads {', '.join(_IMPORTERS)}",
            hint="run 'ferry formats' to see them with their converters",
        )
    if name not in _LOADED:
        module_name, _, attr = _IMPORTERS[name].partition(":")
        _LOADED[name] = getattr(importlib.import_module(module_name), attr)()
    return _LOADED[name]


def iter_importers() -> Iterator[Importer]:
    """All importers, in detection order."""
    for name in _IMPORTERS:
        yield get_importer(name)
