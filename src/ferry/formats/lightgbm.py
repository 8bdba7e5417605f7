"""LightGBM boosters (and their scikit-learn wrappers) saved as LightGBM's text model.

``booster.save_model('model.txt')`` (``LGBMClassifier().booster_.save_model`` for a wrapper)
writes LightGBM's own, code-free text format; it starts with ``tree`` and ``version=v``.
Pickles (``pickle.dump``, ``joblib.dump``) are never read here: a pickle is a program.

Safety: LightGBM's C++ reader does not survive every damaged file. A truncated or altered
tree block makes it read past the text or fail inside an OpenMP region, which aborts the
whole process (SIGABRT/SIGSEGV) instead of raising. So the file is first loaded in a short
child process (about a second: a Python start and ``import lightgbm``); only a file that
loads there is loaded here. Its last ``[Fatal]`` line becomes the error message.

The task comes from the objective line (``binary``, ``multiclass``/``multiclassova`` with
``num_class``, ``regression``/``huber``/``poisson``/...); conversion is onnxmltools'
``convert_lightgbm`` (no ZipMap: plain tensors), whose float32 thresholds are then rounded
so float32 inputs take LightGBM's branch (LightGBM compares with double thresholds); parity
is ``Booster.predict`` on rows drawn between the trees' split thresholds and on rows at
every threshold (:mod:`ferry.formats._trees`). LightGBM sums leaves in float64 and ONNX in
float32, which the tolerances of :mod:`ferry.formats._trees` allow for.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ferry.errors import ArtifactError, ConversionError
from ferry.formats import _trees
from ferry.formats.base import Converted, Importer, ImportOptions
from ferry.formats.conversion import guarded
from ferry.formats.detect import read_head
from ferry.formats.parity import Split
from ferry.runtimes import Arrays

__all__ = ["LightGBMImporter", "looks_like_lightgbm"]

_PROBE_TIMEOUT_S = 120
# Loads the file given as argv[1]; any failure (exception or crash) is a non-zero exit.
_PROBE = "import sys, lightgbm; lightgbm.Booster(model_file=sys.argv[1])"
_CLASSIFIERS = ("binary", "multiclass", "multiclassova")
_REGRESSORS = ("regression", "regression_l1", "huber", "fair", "poisson", "quantile", "mape",
               "gamma", "tweedie")


def looks_like_lightgbm(head: bytes) -> bool:
    """Whether the first bytes are LightGBM's text model (``tree`` then ``version=v``)."""
    return head.startswith((b"tree\nversion=v", b"tree\r\nversion=v"))


class LightGBMImporter(Importer):
    """LightGBM models from ``save_model`` (text); classification and regression."""

    format: ClassVar[str] = "lightgbm"
    description: ClassVar[str] = (
        "LightGBM booster or LGBMClassifier/LGBMRegressor booster_ from save_model (text); "
        "never pickle"
    )
    converter: ClassVar[str] = "onnxmltools.convert_lightgbm"
    extra: ClassVar[str | None] = "lightgbm"
    requires: ClassVar[tuple[str, ...]] = ("lightgbm", "onnxmltools")
    native_runtime: ClassVar[str | None] = "lightgbm"

    def sniff(self, path: Path) -> bool:
        """LightGBM's text model starts with ``tree``, a newline and ``version=v``."""
        return looks_like_lightgbm(read_head(path, 32))

    def convert(self, source: Path, workdir: Path, options: ImportOptions) -> Converted:
        """Probe-load in a child, load, read the task, convert with onnxmltools."""
        _probe(source)
        import lightgbm as lgb

        booster = _load(lgb, source)
        dump = booster.dump_model()
        task = _task(booster, dump, source.name)
        note = task.describe()
        if task.kind == "classifier":
            note += f"; labels are class indices 0..{task.classes - 1}"
        return _trees.import_booster(source, workdir, options, _trees.Booster(
            task=task, splits=list(_splits(dump)), framework=f"lightgbm {lgb.__version__}",
            reference=guarded(_reference(booster, task)),
            model=booster, converter="convert_lightgbm", converter_options={"zipmap": False},
            runtime="lightgbm",
            artifact="model.txt", notes=[note],
        ))


def _probe(source: Path) -> None:
    """Load the file in a child process first: LightGBM aborts on some damaged files."""
    try:
        result = subprocess.run(  # our own interpreter and a fixed script
            [sys.executable, "-I", "-c", _PROBE, str(source.resolve())],
            # errors="replace": a crashing reader prints bytes from beyond the file's end.
            capture_output=True, encoding="utf-8", errors="replace", timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ArtifactError(
            f"{source.name}: LightGBM did not finish reading it in {_PROBE_TIMEOUT_S} s"
        ) from None
    if result.returncode == 0:
        return
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines()
             if line.strip()]
    fatal = [line for line in lines if "[Fatal]" in line or "Error" in line]
    reason = (fatal or lines or [f"exit status {result.returncode}"])[-1]
    reason = "".join(c for c in reason.replace("[LightGBM] [Fatal] ", "") if c.isprintable())
    crashed = " (it crashed the reader)" if result.returncode < 0 else ""
    raise ArtifactError(
        f"{source.name}: LightGBM cannot load it{crashed}: {reason[:300]}",
        hint="the file may be truncated or corrupted; save it again with "
        "booster.save_model('model.txt')",
    )


def _load(lgb: Any, source: Path) -> Any:
    try:
        return lgb.Booster(model_file=str(source))
    except lgb.basic.LightGBMError as exc:  # the probe passed: a race with a writer
        raise ArtifactError(f"{source.name}: LightGBM cannot load it: "
                            f"{_trees.first_line(exc)}") from None


def _task(booster: Any, dump: dict[str, Any], filename: str) -> _trees.Task:
    objective = str(dump.get("objective", "?"))
    name = objective.split()[0] if objective.split() else "?"
    features = int(booster.num_feature())
    if name in _CLASSIFIERS:
        classes = max(int(dump.get("num_class", 1)), 2)
        return _trees.Task("classifier", classes, features, objective)
    if name in _REGRESSORS:
        return _trees.Task("regressor", 0, features, objective)
    raise ConversionError(
        f"{filename}: LightGBM objective {objective!r} is not supported; ferry converts "
        f"{', '.join(_CLASSIFIERS + _REGRESSORS)}",
    )


def _splits(dump: dict[str, Any]) -> Iterator[Split]:
    """Every numeric split in ``Booster.dump_model()``: ``x <= threshold`` (a double) goes left.

    Categorical splits (``==``, holding category sets) are skipped, and a row's path through
    one is not constrained.
    """
    stack: list[tuple[dict[str, Any], tuple[tuple[int, float, bool], ...]]] = [
        (tree.get("tree_structure", {}), ()) for tree in dump.get("tree_info", [])]
    while stack:
        node, path = stack.pop()
        if "split_feature" not in node:
            continue
        feature = int(node["split_feature"])
        numeric = node.get("decision_type") == "<="
        if numeric:
            threshold = float(node["threshold"])
            yield Split(feature, threshold, path)
        for child, left in (("left_child", True), ("right_child", False)):
            step = ((feature, threshold, left),) if numeric else ()
            stack.append((node.get(child, {}), path + step))


def _reference(booster: Any, task: _trees.Task) -> Any:
    def run(samples: Arrays) -> Arrays:
        scores = booster.predict(np.asarray(samples[_trees.INPUT], dtype=np.float64))
        return _trees.reference_outputs(task, scores)

    return run
