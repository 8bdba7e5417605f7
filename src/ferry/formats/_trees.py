"""What the XGBoost and LightGBM importers share: the task, parity samples, output naming.

Both frameworks save gradient-boosted trees in their own native files and both are
converted by onnxmltools into an ONNX ``TreeEnsembleClassifier``/``TreeEnsembleRegressor``.
This module holds the framework-free parts, so each importer keeps only what reads its own
file format.

Outputs follow the scikit-learn importer: classifiers expose ``probabilities``
(``[-1, classes]``, first, so ``/predict`` can add class labels) and ``label`` (INT64 class
indices, which is what a booster file knows: a scikit-learn wrapper's own class names live
in its pickle, never in the native file); regressors expose ``predictions`` (``[-1, 1]``).

Parity samples are drawn from the trees themselves: random normal rows would fall into the
same few leaves of a model trained on, say, breast-cancer measurements in the hundreds. For
each feature the samples take values *between* the model's split thresholds (and beyond
both ends), so many branches are exercised and no value sits on a threshold, where float32
(ONNX) and float64 (LightGBM) comparisons may legitimately disagree.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import ConversionError, FerryError, InputError
from ferry.formats.base import Converted, ImportOptions
from ferry.formats.fallback import discard, fallback_note, probe_onnx, probe_tolerance
from ferry.formats.pipeline import parity_samples
from ferry.runtimes import Arrays
from ferry.runtimes.boosters import booster_outputs
from ferry.signature import Signature, TensorSpec

__all__ = [
    "Task",
    "first_line",
    "native",
    "onnx_or_native",
    "onnxmltools_version",
    "reference_outputs",
    "task_signature",
    "threshold_samples",
    "write_onnx",
]

INPUT = "input"
# XGBoost prefixes its errors with "[00:46:22] /workspace/src/common/json.cc:409: ".
_CPP_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ")
#: |Δ| accepted for probabilities: both sides sum float32 leaf values (LightGBM in float64).
PROBABILITY_TOLERANCE = 1e-5
#: Regression values are unbounded: |Δ| <= 1e-4 + 1e-5·|y| (a float32 sum of leaf values).
REGRESSION_TOLERANCE = 1e-4
REGRESSION_RTOL = 1e-5


@dataclass(frozen=True)
class Task:
    """What a booster predicts, read from its objective.

    Attributes:
        kind: ``classifier`` or ``regressor``.
        classes: number of classes (2 for binary), 0 for a regressor.
        features: number of input features.
        objective: the framework's objective name, for messages and the manifest.
        probabilities: whether the classifier's probabilities are real probabilities
            (``multi:softmax`` and ``binary:hinge`` boosters give labels only).
    """

    kind: str
    classes: int
    features: int
    objective: str
    probabilities: bool = True

    @property
    def outputs(self) -> list[str]:
        """The output names the artifact keeps, in order."""
        if self.kind == "regressor":
            return ["predictions"]
        return ["probabilities", "label"] if self.probabilities else ["label"]

    def describe(self) -> str:
        """``binary classifier (objective binary:logistic, 30 features)`` and the like."""
        what = {0: "regressor", 2: "binary classifier"}.get(self.classes,
                                                             f"{self.classes}-class classifier")
        return f"{what} (objective {self.objective}, {self.features} features)"


def threshold_samples(thresholds: Iterable[tuple[int, float]], features: int, rows: int,
                      seed: int) -> Arrays:
    """Rows whose values lie between the trees' split thresholds, feature by feature.

    Args:
        thresholds: ``(feature index, threshold)`` of every numeric split.
        features: number of input features.
        rows: how many rows to draw.
        seed: the random seed (the import's ``--seed``).
    """
    per_feature: list[list[float]] = [[] for _ in range(features)]
    for index, value in thresholds:
        if 0 <= index < features and np.isfinite(value):
            per_feature[index].append(float(np.float32(value)))
    rng = np.random.default_rng(seed)
    columns = [rng.choice(_candidates(values), size=rows) for values in per_feature]
    data = np.stack(columns, axis=1) if columns else np.zeros((rows, 0))
    return {INPUT: data.astype(np.float32)}


def _candidates(values: list[float]) -> np.ndarray[Any, Any]:
    """Midpoints between consecutive thresholds, and a value beyond each end."""
    cuts = np.unique(np.asarray(values, dtype=np.float32))
    if cuts.size == 0:
        return np.zeros(1, dtype=np.float32)  # a feature no tree splits on
    margin = max(1.0, float(np.abs(cuts).max()) * 0.1)
    inner = ((cuts[:-1].astype(np.float64) + cuts[1:]) / 2).astype(np.float32)
    inner = inner[~np.isin(inner, cuts)]  # adjacent float32 thresholds have no midpoint
    ends = np.asarray([cuts[0] - margin, cuts[-1] + margin], dtype=np.float32)
    return np.concatenate([inner, ends])


def reference_outputs(task: Task, scores: np.ndarray[Any, Any],
                      labels: np.ndarray[Any, Any] | None = None) -> Arrays:
    """The framework's own predictions shaped and named like the artifact's outputs.

    Args:
        task: what the booster predicts.
        scores: the booster's ``predict``: probabilities (``[n]`` for binary: P(class 1),
            ``[n, k]`` for multiclass) or regression values.
        labels: class labels when the booster predicts them directly (``multi:softmax``).
    """
    return booster_outputs(task.outputs, labels if labels is not None else scores)


def task_signature(task: Task) -> Signature:
    """The signature of a booster for ``task``: what the ONNX model and the native share."""
    shapes = {"probabilities": (-1, task.classes), "label": (-1,), "predictions": (-1, 1)}
    types = {"probabilities": "FP32", "label": "INT64", "predictions": "FP32"}
    return Signature(
        inputs=(TensorSpec(name=INPUT, datatype="FP32", shape=(-1, task.features)),),
        outputs=tuple(TensorSpec(name=name, datatype=types[name], shape=shapes[name])
                      for name in task.outputs),
    )


def onnx_or_native(workdir: Path, task: Task, convert: Callable[[], Any], *,
                   reference: Callable[[Arrays], Arrays], samples: Arrays,
                   options: ImportOptions, runtime: str) -> tuple[Signature | None, str | None]:
    """Convert and probe; ``(signature, None)`` when the ONNX file is kept.

    Otherwise ``(None, note)``: the staging directory is emptied and the note says why the
    booster is served by its native ``runtime``: ``--native``, a conversion error, or a
    probe (the parity rows, and one row alone) that missed the tolerance.
    """
    if options.native:
        return None, f"served natively by {runtime}: --native was given"
    given = options.samples is not None
    rows = parity_samples(options, task_signature(task))[0] if given else samples
    batches = [rows, {name: array[:1] for name, array in rows.items()}]
    expected = [reference(batch) for batch in batches]
    try:
        signature = write_onnx(convert(), task, workdir / "model.onnx")
        tolerance = PROBABILITY_TOLERANCE if task.kind == "classifier" else REGRESSION_TOLERANCE
        probe_onnx(workdir / "model.onnx", signature, batches, expected,
                   tolerance=probe_tolerance(options, tolerance),
                   rtol=0.0 if task.kind == "classifier" else REGRESSION_RTOL)
    except InputError:
        raise
    except FerryError as exc:
        discard(workdir)
        return None, fallback_note(runtime, exc)
    return signature, None


def native(source: Path, workdir: Path, artifact: str, task: Task, base: Converted,
           note: str, runtime: str) -> Converted:
    """``base`` (the ONNX-shaped Converted) turned into the booster file served natively."""
    shutil.copyfile(source, workdir / artifact)
    return dataclasses.replace(base, artifact=artifact, runtime=runtime, platform=runtime,
                               converter=None, signature=task_signature(task),
                               notes=[*base.notes, note])


def write_onnx(onnx_model: Any, task: Task, path: Path) -> Signature:
    """Name the converter's outputs, fix their shapes, save, check, and read the signature.

    onnxmltools names classifier outputs ``label`` and ``probabilities`` and a regressor's
    ``variable``; it declares LightGBM's label as shape ``[1]`` (ONNX Runtime then warns on
    every batch), so every kept output gets an explicit ``[batch, ...]`` shape here.
    """
    import onnx

    from ferry.formats.onnx import onnx_signature, write_checked_onnx

    graph = onnx_model.graph
    renames = {"variable": "predictions"}
    for node in graph.node:
        for i, name in enumerate(node.output):
            node.output[i] = renames.get(name, name)
    by_name = {renames.get(o.name, o.name): o for o in graph.output}
    missing = [name for name in task.outputs if name not in by_name]
    if missing:
        raise ConversionError(f"onnxmltools produced no output {missing[0]!r} for this "
                              f"{task.describe()}")
    shapes: dict[str, list[str | int | None]] = {
        "probabilities": ["batch", task.classes], "label": ["batch"], "predictions": ["batch", 1],
    }
    kept = []
    for name in task.outputs:
        elem = by_name[name].type.tensor_type.elem_type
        kept.append(onnx.helper.make_tensor_value_info(name, elem, shapes[name]))
    del graph.output[:]
    graph.output.extend(kept)
    onnx.save(onnx_model, str(path))
    write_checked_onnx(path)
    return onnx_signature(onnx_model)


def onnxmltools_version() -> str:
    """``onnxmltools 1.16.0``, for the manifest's converter field."""
    import onnxmltools

    return f"onnxmltools {onnxmltools.__version__}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters.

    XGBoost and LightGBM put C++ stack traces after the first line.
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    line = _CPP_PREFIX.sub("", line)
    return line if len(line) < 300 else line[:297] + "..."
