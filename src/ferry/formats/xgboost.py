"""XGBoost boosters (and their scikit-learn wrappers) saved as XGBoost JSON or UBJSON.

``booster.save_model('model.json')`` / ``'model.ubj'`` (and ``XGBClassifier.save_model``,
which writes the same file) are XGBoost's own, documented, code-free formats. Pickles
(``pickle.dump(model)``, ``joblib.dump``) are never read here: a pickle is a program.

Detection reads bytes only: the JSON document starts with ``{"learner"``; the UBJSON one
with ``{`` then a UBJSON integer marker (``i U I l L``) giving the length of ``learner``.
The bytes are handed to XGBoost's own loader as a buffer, which tells the two apart itself,
so a file's name never decides how it is parsed.

The task comes from the learner's objective (``binary:logistic`` -> binary classifier,
``multi:softprob`` -> ``num_class`` classes, ``reg:*`` -> regressor); conversion is
onnxmltools' ``convert_xgboost``; parity is ``Booster.predict`` on rows drawn between the
trees' split thresholds and on rows at every threshold (:mod:`ferry.formats._trees`).
XGBoost compares float32 inputs with float32 thresholds (``x < t``), which ONNX's
``BRANCH_LT`` does too: the thresholds are checked, and kept, exactly.
"""

from __future__ import annotations

import json
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

__all__ = ["XGBoostImporter", "looks_like_xgboost"]

# UBJSON integer markers and their sizes: the length of the first key ("learner") follows.
_UBJ_INT_SIZES = {ord("i"): 1, ord("U"): 1, ord("I"): 2, ord("l"): 4, ord("L"): 8}
#: objective -> (kind, probabilities are real). Anything else is refused by name.
_OBJECTIVES: dict[str, tuple[str, bool]] = {
    "binary:logistic": ("classifier", True),
    "binary:hinge": ("classifier", False),
    "multi:softprob": ("classifier", True),
    "multi:softmax": ("classifier", False),
    **{name: ("regressor", True) for name in (
        "reg:squarederror", "reg:squaredlogerror", "reg:pseudohubererror",
        "reg:absoluteerror", "reg:quantileerror", "count:poisson", "reg:gamma", "reg:tweedie",
    )},
}


def looks_like_xgboost(head: bytes) -> bool:
    """Whether the first bytes are an XGBoost JSON or UBJSON model."""
    text = head.lstrip()
    if text.startswith(b'{"learner"'):
        return True
    if len(head) < 2 or head[0:1] != b"{" or head[1] not in _UBJ_INT_SIZES:
        return False
    start = 2 + _UBJ_INT_SIZES[head[1]]
    return head[start:start + 7] == b"learner"


class XGBoostImporter(Importer):
    """XGBoost models from ``save_model`` (JSON or UBJ); classification and regression."""

    format: ClassVar[str] = "xgboost"
    description: ClassVar[str] = (
        "XGBoost booster or XGBClassifier/XGBRegressor from save_model (.json, .ubj); "
        "never pickle"
    )
    converter: ClassVar[str] = "onnxmltools.convert_xgboost"
    extra: ClassVar[str | None] = "xgboost"
    requires: ClassVar[tuple[str, ...]] = ("xgboost", "onnxmltools")
    native_runtime: ClassVar[str | None] = "xgboost"

    def sniff(self, path: Path) -> bool:
        """XGBoost JSON starts with ``{"learner"``; UBJSON with ``{``, a length, ``learner``."""
        return looks_like_xgboost(read_head(path, 32))

    def convert(self, source: Path, workdir: Path, options: ImportOptions) -> Converted:
        """Load with XGBoost, read the task, convert with onnxmltools, draw parity rows."""
        import xgboost as xgb

        booster = _load(xgb, source)
        config = _learner_config(booster, source.name)
        task = _task(booster, config, source.name)
        notes = [f"{task.describe()}; labels are class indices 0..{task.classes - 1}"
                 if task.kind == "classifier" else task.describe()]
        if not task.probabilities:
            notes.append(f"objective {task.objective} predicts classes only: no probabilities")
        return _trees.import_booster(source, workdir, options, _trees.Booster(
            task=task, splits=list(_splits(booster)), framework=f"xgboost {xgb.__version__}",
            reference=guarded(_reference(xgb, booster, task)),
            model=booster, converter="convert_xgboost", converter_options={},
            runtime="xgboost",
            artifact="model.json" if read_head(source, 2) == b'{"' else "model.ubj",
            notes=notes,
        ))


def _load(xgb: Any, source: Path) -> Any:
    booster = xgb.Booster()
    try:
        # A buffer, not a path: XGBoost then picks JSON or UBJSON from the bytes, not the
        # file's extension (a path ending in neither would be read as the legacy binary).
        booster.load_model(bytearray(source.read_bytes()))
    except xgb.core.XGBoostError as exc:
        raise ArtifactError(
            f"{source.name}: XGBoost cannot load it: {_trees.first_line(exc)}",
            hint="the file may be truncated or corrupted; save it again with "
            "booster.save_model('model.json')",
        ) from None
    return booster


def _learner_config(booster: Any, filename: str) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads(booster.save_config())["learner"]
        return config
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{filename}: XGBoost's configuration lacks {exc}") from None


def _task(booster: Any, config: dict[str, Any], filename: str) -> _trees.Task:
    objective = str(config.get("objective", {}).get("name", "?"))
    params = config.get("learner_model_param", {})
    if objective not in _OBJECTIVES:
        supported = ", ".join(sorted(_OBJECTIVES))
        raise ConversionError(
            f"{filename}: XGBoost objective {objective!r} is not supported; ferry converts "
            f"{supported}",
        )
    if int(params.get("num_target", "1")) > 1:
        raise ConversionError(f"{filename}: a multi-output booster ({params['num_target']} "
                              "targets) has no ONNX conversion; train one model per target")
    booster_type = config.get("gradient_booster", {}).get("name", "gbtree")
    if booster_type not in ("gbtree", "dart"):
        raise ConversionError(f"{filename}: booster {booster_type!r} is not supported; "
                              "onnxmltools converts tree boosters (gbtree, dart)")
    kind, probabilities = _OBJECTIVES[objective]
    classes = max(int(params.get("num_class", "0")), 2) if kind == "classifier" else 0
    return _trees.Task(kind, classes, int(booster.num_features()), objective, probabilities)


def _splits(booster: Any) -> Iterator[Split]:
    """Every split, read from XGBoost's JSON model: ``x < threshold`` (a float32) goes left."""
    model = json.loads(booster.save_raw("json"))
    for tree in _find_trees(model.get("learner", {}).get("gradient_booster", {})):
        lefts, rights = tree.get("left_children", []), tree.get("right_children", [])
        features, values = tree.get("split_indices", []), tree.get("split_conditions", [])
        categorical = set(tree.get("categories_nodes", []))
        stack: list[tuple[int, tuple[tuple[int, float, bool], ...]]] = [(0, ())] if lefts else []
        while stack:
            node, path = stack.pop()
            if node >= len(lefts) or lefts[node] == -1:
                continue
            if node in categorical:
                stack += [(lefts[node], path), (rights[node], path)]
                continue
            # XGBoost holds and compares its thresholds as float32.
            feature, threshold = int(features[node]), float(np.float32(values[node]))
            yield Split(feature, threshold, path)
            stack += [(lefts[node], (*path, (feature, threshold, True))),
                      (rights[node], (*path, (feature, threshold, False)))]


def _find_trees(node: Any) -> Iterator[dict[str, Any]]:
    """The trees of a gbtree or a dart booster (dart nests its gbtree one level down)."""
    if isinstance(node, dict):
        if isinstance(node.get("trees"), list):
            yield from node["trees"]
            return
        for value in node.values():
            yield from _find_trees(value)


def _reference(xgb: Any, booster: Any, task: _trees.Task) -> Any:
    def run(samples: Arrays) -> Arrays:
        matrix = xgb.DMatrix(np.asarray(samples[_trees.INPUT], dtype=np.float32))
        scores = booster.predict(matrix)
        # multi:softmax and binary:hinge predict the class itself, not probabilities.
        labels = scores if task.kind == "classifier" and not task.probabilities else None
        return _trees.reference_outputs(task, scores, labels=labels)

    return run
