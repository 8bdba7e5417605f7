"""Try the ONNX conversion first; fall back to the native runtime if it fails or misses parity.

An importer whose framework has a native runtime (torch, TensorFlow) converts to ONNX,
then *probes* the result here on the same parity inputs the pipeline will use, plus a
second batch size when the batch axis is variable (so a conversion that froze the batch
dimension is caught). Only a conversion that passes is kept; otherwise the importer stores
the source as it is and the manifest says why (:func:`fallback_note`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferry.errors import ArtifactError, FerryError, InputError, ParityError
from ferry.formats.base import ImportOptions, Reference
from ferry.formats.parity import compare
from ferry.formats.pipeline import parity_samples
from ferry.runtimes import Arrays, load_runtime
from ferry.signature import Signature

__all__ = [
    "Attempt",
    "attempt_onnx",
    "discard",
    "fallback_note",
    "guarded",
    "probe_batches",
    "probe_onnx",
    "probe_tolerance",
    "run_reference",
]


@dataclass(frozen=True)
class Attempt:
    """How a conversion attempt ended: ``converter`` when the ONNX file is kept, else a note."""

    converter: str | None
    note: str | None = None


def attempt_onnx(workdir: Path, artifact: str, export: Callable[[Path], str], *,
                 signature: Signature, reference: Reference, options: ImportOptions,
                 runtime: str, tolerance: float) -> Attempt:
    """Convert with ``export`` (which returns the converter's name) and probe the result.

    Returns the converter when the artifact passed; otherwise the staging directory is
    emptied and the note for the manifest says why the model is served by ``runtime``.

    Raises:
        InputError: the user's samples do not fit (a mistake to report, not to fall back on).
        ArtifactError: the source model itself fails on the probe inputs: no runtime could
            serve it, so that is reported rather than taken for a conversion failure.
    """
    if options.native:
        return Attempt(None, f"served natively by {runtime}: --native was given")
    batches = probe_batches(signature, options)
    expected = [run_reference(reference, batch) for batch in batches]
    path = workdir / artifact
    try:
        converter = export(path)
        probe_onnx(path, signature, batches, expected,
                   tolerance=probe_tolerance(options, tolerance), rtol=0.0)
    except InputError:
        raise
    except FerryError as exc:
        discard(workdir)
        return Attempt(None, fallback_note(runtime, exc))
    return Attempt(converter)


def probe_batches(signature: Signature, options: ImportOptions) -> list[Arrays]:
    """The inputs a conversion is probed on: the parity samples and another batch size.

    Raises:
        InputError: the user's samples do not fit the signature.
    """
    samples, _ = parity_samples(options, signature)
    if not signature.batch_axis:
        return [samples]
    rows = int(next(iter(samples.values())).shape[0])
    other = {name: (arr[:1] if rows > 1 else np.concatenate([arr, arr]))
             for name, arr in samples.items()}
    return [samples, other]


def probe_tolerance(options: ImportOptions, default: float) -> float:
    """The user's ``--tolerance`` applies to the probe too: a conversion it refuses falls back."""
    return options.tolerance if options.tolerance is not None else default


def probe_onnx(path: Path, signature: Signature, batches: list[Arrays],
               expected: list[Arrays], *, tolerance: float, rtol: float,
               origins: dict[int, str] | None = None) -> None:
    """Run the ONNX artifact at ``path`` on each batch and compare with the source's outputs.

    ``origins`` names batches by position for the error message (``probe batch of N``
    otherwise).

    Raises:
        FerryError: ONNX Runtime cannot load or run it (ArtifactError, InputError), or an
            output differs beyond the tolerance (ParityError, with the figures).
    """
    with load_runtime("onnxruntime", path, signature) as runtime:
        for i, (batch, want) in enumerate(zip(batches, expected, strict=True)):
            rows = int(next(iter(batch.values())).shape[0])
            origin = (origins or {}).get(i, f"probe batch of {rows}")
            compare(signature, want, runtime, batch, method="probe",
                    origin=origin, tolerance=tolerance, rtol=rtol)


def run_reference(reference: Reference, batch: Arrays) -> Arrays:
    """Run the source model; its own failures become an ArtifactError that says so."""
    try:
        return reference(batch)
    except FerryError:
        raise
    except Exception as exc:  # the framework's own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(
            f"the source model fails on the parity inputs: {first[:300]}",
            hint="pass real inputs with --samples",
        ) from None


def guarded(reference: Reference) -> Reference:
    """``reference`` with the framework's own exceptions turned into an ArtifactError.

    The pipeline calls an importer's reference directly for its parity check; a torch or
    TensorFlow error escaping from it would reach the user as an internal error.
    """
    return lambda batch: run_reference(reference, batch)


def fallback_note(runtime: str, exc: FerryError) -> str:
    """The manifest note that says why a model is served natively instead of as ONNX."""
    kind = "missed parity" if isinstance(exc, ParityError) else "failed"
    return f"served natively by {runtime}: the ONNX conversion {kind}: {exc.message}"


def discard(workdir: Path, keep: frozenset[str] = frozenset()) -> None:
    """Remove what a failed conversion left in the staging directory (files only)."""
    for entry in workdir.iterdir():
        if entry.name not in keep and entry.is_file():
            entry.unlink()
