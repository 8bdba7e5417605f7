"""The conversion step of every importer that has a native runtime: convert, probe, fall back.

An importer that can serve its source unconverted (torch, TensorFlow, scikit-learn, XGBoost,
LightGBM) hands :func:`convert_or_fall_back` two things and nothing else:

- ``export(path)``: write the ONNX artifact at ``path`` (the framework's converter) and
  return the :class:`~ferry.formats.base.Converted` that describes it, with the source's
  own predict as ``reference`` and the tolerance the conversion must meet;
- a :class:`Fallback`: the native runtime's name for messages, and how to store the
  source itself and describe it (``Converted``) with a note that says why.

Then, once, here: ``--native`` goes straight to the fallback; otherwise the artifact is
exported and *probed* with ONNX Runtime against the reference on the inputs the import's
parity check will use (the user's ``--samples``, or the importer's drawn or generated
samples), on a second batch size when the batch axis is variable (a conversion that froze
the batch dimension is caught), and on a tree model's rows at its split thresholds. Only a
conversion that passes is kept; a failed or missed one is discarded and the source is
served natively, the manifest's note saying why. Without a fallback (a model only the ONNX
path can serve) a failed export is raised and the import's own parity check decides.

The module is named for the step it runs (one conversion attempt of one source model);
:mod:`ferry.formats.pipeline` is the whole import around it (detect, convert, parity,
commit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferry.errors import ArtifactError, FerryError, InputError, ParityError
from ferry.formats.base import Converted, ImportOptions, Reference
from ferry.formats.parity import compare
from ferry.formats.pipeline import parity_samples
from ferry.runtimes import Arrays, load_runtime

__all__ = ["ARTIFACT", "AT_SPLITS", "Fallback", "convert_or_fall_back", "guarded",
           "run_reference"]

#: The ONNX artifact's file name in the version directory.
ARTIFACT = "model.onnx"
#: How parity messages name a tree model's rows at its split thresholds.
AT_SPLITS = "rows at the trees' split thresholds and their float32 neighbours"


@dataclass(frozen=True)
class Fallback:
    """How an importer serves its source when the ONNX conversion is not kept.

    Attributes:
        runtime: the native runtime as the notes name it (``torch (torch 2.5.1)``).
        store: copies the source into the staging directory given and returns the
            Converted that serves it natively, its notes ending with the note given.
        asked_runtime: how the note for ``--native`` names the runtime, when not as
            ``runtime`` (scikit-learn's says ``sklearn`` alone).
    """

    runtime: str
    store: Callable[[Path, str], Converted]
    asked_runtime: str | None = None


def convert_or_fall_back(workdir: Path, options: ImportOptions,
                         export: Callable[[Path], Converted],
                         fallback: Fallback | None) -> Converted:
    """Export to ONNX and probe it; the native fallback when either fails or ``--native``.

    Raises:
        InputError: the user's samples do not fit (a mistake to report, not to fall back on).
        ArtifactError: the source model itself fails on the probe inputs: no runtime could
            serve it, so that is reported rather than taken for a conversion failure.
        FerryError: the export failed and there is no fallback.
    """
    if options.native and fallback is not None:
        named = fallback.asked_runtime or fallback.runtime
        return fallback.store(workdir, f"served natively by {named}: --native was given")
    path = workdir / ARTIFACT
    try:
        converted = export(path)
    except InputError:
        raise
    except FerryError as exc:
        if fallback is None:
            raise
        return _fall_back(workdir, fallback, exc)
    if fallback is None or converted.reference is None:
        return converted  # nothing to fall back on: the import's parity check decides
    batches, origins = _probe_batches(converted, options)
    expected = [run_reference(converted.reference, batch) for batch in batches]
    tolerance = options.tolerance if options.tolerance is not None else converted.tolerance
    try:
        with load_runtime("onnxruntime", path, converted.signature) as runtime:
            for batch, want, origin in zip(batches, expected, origins, strict=True):
                compare(converted.signature, want, runtime, batch, method="probe",
                        origin=origin, tolerance=tolerance, rtol=converted.rtol)
    except InputError:
        raise
    except FerryError as exc:
        return _fall_back(workdir, fallback, exc)
    return converted


def _probe_batches(converted: Converted, options: ImportOptions) -> tuple[list[Arrays], list[str]]:
    """The parity samples, a tree's rows at its thresholds, and another batch size.

    Raises:
        InputError: the user's samples do not fit the signature.
    """
    signature = converted.signature
    if options.samples is None and converted.samples is not None:
        samples = converted.samples
    else:
        samples, _ = parity_samples(options, signature)
    batches = [samples]
    at_splits = converted.threshold_rows
    if at_splits and len(next(iter(at_splits.values()))):
        batches.append(at_splits)
    if signature.batch_axis:
        rows = int(next(iter(samples.values())).shape[0])
        batches.append({name: (arr[:1] if rows > 1 else np.concatenate([arr, arr]))
                        for name, arr in samples.items()})
    origins = [AT_SPLITS if batch is at_splits else
               f"probe batch of {int(next(iter(batch.values())).shape[0])}"
               for batch in batches]
    return batches, origins


def _fall_back(workdir: Path, fallback: Fallback, exc: FerryError) -> Converted:
    """Empty the staging directory and serve the source natively, saying why."""
    for entry in workdir.iterdir():
        if entry.is_file():
            entry.unlink()
    kind = "missed parity" if isinstance(exc, ParityError) else "failed"
    return fallback.store(workdir, f"served natively by {fallback.runtime}: the ONNX "
                                   f"conversion {kind}: {exc.message}")


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
