"""What the XGBoost and LightGBM importers share: the task, parity samples, output naming.

Both frameworks save gradient-boosted trees in their own native files and both are
converted by onnxmltools into an ONNX ``TreeEnsembleClassifier``/``TreeEnsembleRegressor``.
This module holds the framework-free parts, so each importer keeps only what reads its own
file format and hands a :class:`Booster` to :func:`import_booster`, which converts, rounds
the thresholds, and lets :mod:`ferry.formats.conversion` probe the result and fall back to
the booster's own runtime.

Outputs follow the scikit-learn importer: classifiers expose ``probabilities``
(``[-1, classes]``, first, so ``/predict`` can add class labels) and ``label`` (INT64 class
indices, which is what a booster file knows: a scikit-learn wrapper's own class names live
in its pickle, never in the native file); regressors expose ``predictions`` (``[-1, 1]``).

Parity samples are drawn from the trees themselves: random normal rows would fall into the
same few leaves of a model trained on, say, breast-cancer measurements in the hundreds. For
each feature the samples take values *between* the model's split thresholds (and beyond
both ends), so many branches are exercised; more rows sit *at* every threshold and at its
float32 neighbours (:func:`ferry.formats.parity.split_samples`).

Thresholds: ONNX's ``TreeEnsemble*`` operators compare a float32 input with a float32
threshold. LightGBM and scikit-learn compare the (float32-representable) input with a
*double* threshold, ``x <= t``; converters round ``t`` to the nearest float32, which is
above ``t`` about half the time, and then an input equal to that float32 goes left in ONNX
and right in the framework. :func:`snap_thresholds` rewrites each converted threshold from
the source's exact one so that every float32 input takes the framework's branch: for
``x <= t`` (``BRANCH_LEQ``) and ``x > t`` the largest float32 ``<= t``; for ``x < t``
(``BRANCH_LT``, XGBoost, whose thresholds are float32 already) and ``x >= t`` the smallest
float32 ``>= t``. The rows at the thresholds then prove it; a model that still differs is
served natively.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import ConversionError
from ferry.formats.base import Converted, ImportOptions, Reference
from ferry.formats.conversion import ARTIFACT, Fallback, convert_or_fall_back
from ferry.formats.parity import Split, make_samples, split_samples
from ferry.runtimes import Arrays
from ferry.runtimes.boosters import booster_outputs
from ferry.signature import Signature, TensorSpec

__all__ = [
    "Booster",
    "Task",
    "first_line",
    "import_booster",
    "onnxmltools_version",
    "reference_outputs",
    "snap_thresholds",
    "snapped_note",
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
    splits = [Split(feature, threshold) for feature, threshold in thresholds]
    return make_samples(task_signature(Task("regressor", 0, features, "?")), rows, seed,
                        splits=splits)


def snap_thresholds(onnx_model: Any, splits: Sequence[Split], input_name: str = INPUT
                    ) -> tuple[int, int]:
    """Round the thresholds of the ``TreeEnsemble*`` nodes so float32 inputs branch as the source.

    Each numeric node (fed by the graph input ``input_name``) is matched with the source's
    exact threshold on the same feature nearest its value (at most one float32 step away),
    and its value replaced by the float32 that makes ``x MODE value`` equal ``x MODE t`` for
    every float32 ``x``. Nodes in place.

    Returns:
        ``(changed, unmatched)``: thresholds moved, and numeric nodes with no (or two
        equally near, disagreeing) source thresholds, left as the converter wrote them.
    """
    by_feature: dict[int, set[float]] = {}
    for split in splits:
        if np.isfinite(split.threshold):
            by_feature.setdefault(split.feature, set()).add(split.threshold)
    exact = {feature: np.asarray(sorted(values), dtype=np.float64)
             for feature, values in by_feature.items()}
    changed = unmatched = 0
    for node in onnx_model.graph.node:
        if not node.op_type.startswith("TreeEnsemble") or not node.input:
            continue
        attrs = {attr.name: attr for attr in node.attribute}
        if node.input[0] != input_name or "nodes_values" not in attrs:
            continue
        values = attrs["nodes_values"].floats
        modes = attrs["nodes_modes"].strings
        features = attrs["nodes_featureids"].ints
        for i, (mode, feature) in enumerate(zip(modes, features, strict=True)):
            direction = _ROUNDING.get(mode.decode())
            if direction is None:
                continue
            current = np.float32(values[i])
            wanted = _snapped(exact.get(int(feature)), current, direction)
            if wanted is None:
                unmatched += 1
            elif wanted != current:
                values[i] = float(wanted)
                changed += 1
    return changed, unmatched


#: ONNX node mode -> which float32 a double threshold becomes: down for x <= t and x > t.
_ROUNDING = {"BRANCH_LEQ": -1, "BRANCH_GT": -1, "BRANCH_LT": 1, "BRANCH_GTE": 1}


def _snapped(exact: np.ndarray[Any, Any] | None, current: np.float32,
             direction: int) -> np.float32 | None:
    """The float32 for the source threshold nearest ``current``, or None if none fits."""
    if exact is None or exact.size == 0:
        return None
    low = float(np.nextafter(current, np.float32(-np.inf)))
    high = float(np.nextafter(current, np.float32(np.inf)))
    near = exact[(exact >= low) & (exact <= high)]
    if near.size == 0:
        return None
    distance = np.abs(near - float(current))
    results = {_round(float(t), direction) for t in near[distance == distance.min()]}
    return results.pop() if len(results) == 1 else None


def _round(threshold: float, direction: int) -> np.float32:
    """The largest float32 <= ``threshold`` (direction -1) or the smallest >= it (+1)."""
    value = np.float32(threshold)
    if direction < 0 and float(value) > threshold:
        return np.float32(np.nextafter(value, np.float32(-np.inf)))
    if direction > 0 and float(value) < threshold:
        return np.float32(np.nextafter(value, np.float32(np.inf)))
    return value


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


@dataclass(frozen=True)
class Booster:
    """What an XGBoost or LightGBM importer read from a booster file.

    Attributes:
        task: what the booster predicts.
        splits: its numeric splits, thresholds as the framework compares them.
        framework: ``lightgbm 4.7.0`` and the like.
        reference: the booster's own predict, named like the artifact's outputs.
        model: the loaded booster, which onnxmltools converts.
        converter: the onnxmltools function (``convert_xgboost``).
        converter_options: its keyword arguments beyond the input type and the opset.
        runtime: the native runtime's name (``xgboost``, ``lightgbm``).
        artifact: the file name the booster is stored under when served natively.
        notes: what the manifest says of the booster.
    """

    task: Task
    splits: list[Split]
    framework: str
    reference: Reference
    model: Any
    converter: str
    converter_options: dict[str, Any]
    runtime: str
    artifact: str
    notes: list[str]


def import_booster(source: Path, workdir: Path, options: ImportOptions,
                   booster: Booster) -> Converted:
    """Convert with onnxmltools, round the thresholds, and probe; else keep the booster file."""
    task, splits = booster.task, booster.splits
    samples = make_samples(task_signature(task), max(options.sample_count, 64), options.seed,
                           splits=splits)
    classifier = task.kind == "classifier"
    options_text = ", ".join(f"{k}={v}" for k, v in booster.converter_options.items())
    base = Converted(
        artifact=ARTIFACT, signature=task_signature(task),
        converter=f"{onnxmltools_version()} {booster.converter}"
        + (f" ({options_text})" if options_text else ""), framework=booster.framework,
        reference=booster.reference, reference_name=f"{booster.framework} Booster.predict",
        tolerance=PROBABILITY_TOLERANCE if classifier else REGRESSION_TOLERANCE,
        rtol=0.0 if classifier else REGRESSION_RTOL, notes=booster.notes, samples=samples,
        samples_origin=f"{len(samples[INPUT])} rows drawn between the trees' split "
        f"thresholds (seed {options.seed})",
        threshold_rows={INPUT: split_samples(splits, task.features, options.seed)},
    )

    def export(path: Path) -> Converted:
        onnx_model = _convert(booster, options.opset)
        snapped, _ = snap_thresholds(onnx_model, splits)
        signature = write_onnx(onnx_model, task, path)
        return dataclasses.replace(base, signature=signature,
                                   notes=[*base.notes, *snapped_note(snapped)])

    def store(workdir: Path, note: str) -> Converted:
        shutil.copyfile(source, workdir / booster.artifact)
        return dataclasses.replace(base, artifact=booster.artifact, runtime=booster.runtime,
                                   platform=booster.runtime, converter=None,
                                   notes=[*base.notes, note])

    fallback = Fallback(f"{booster.runtime} ({booster.framework})", store)
    return convert_or_fall_back(workdir, options, export, fallback)


def _convert(booster: Booster, opset: int | None) -> Any:
    """Onnxmltools' ONNX model of the booster; any failure is a ConversionError."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    task = booster.task
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # onnxmltools warns about its own opset choices
            return getattr(onnxmltools, booster.converter)(
                booster.model, initial_types=[(INPUT, FloatTensorType([None, task.features]))],
                target_opset=opset, **booster.converter_options,
            )
    except Exception as exc:  # onnxmltools raises RuntimeError, ValueError, AttributeError...
        raise ConversionError(
            f"onnxmltools cannot convert this {task.describe()}: {first_line(exc)}"
        ) from None


def snapped_note(snapped: int) -> list[str]:
    """The manifest note for thresholds moved by :func:`snap_thresholds` (none if 0)."""
    if not snapped:
        return []
    return [f"{snapped} split thresholds rounded to the float32 on the framework's side "
            "(the framework compares float32 inputs with double thresholds)"]


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
