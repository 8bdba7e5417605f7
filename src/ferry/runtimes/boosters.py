"""Native XGBoost and LightGBM runtimes: the booster itself answers.

Used when onnxmltools cannot convert a booster, when the converted model misses the parity
probe, or with ``ferry import --native``. The stored artifact is the booster's own file
(XGBoost JSON/UBJSON, LightGBM text: formats without code), and the signature is the one the
ONNX model would have had: one FP32 ``input`` ``[-1, features]``; ``probabilities`` and
``label`` for a classifier (``label`` only for class-predicting objectives), or
``predictions`` ``[-1, 1]`` for a regressor. Which of those the signature holds tells the
runtime how to read the booster's scores, so no other metadata is needed.

The frameworks are imported inside ``load``: importing this module costs nothing, and
serving ONNX models never loads them. LightGBM files were probed in a child process at
import (its reader aborts on some damaged files); here the repository has verified the
file's sha256 against the manifest before the runtime sees it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ferry.errors import ArtifactError, InputError, MissingDependencyError
from ferry.runtimes.base import Arrays, Runtime, RuntimeOptions
from ferry.signature import Signature

__all__ = ["LightGBMRuntime", "XGBoostRuntime", "booster_outputs"]


def booster_outputs(names: Sequence[str], scores: np.ndarray[Any, Any]) -> Arrays:
    """A booster's ``predict`` scores, shaped and named like the ONNX model's outputs.

    Args:
        names: the signature's output names (``predictions``; ``probabilities`` and
            ``label``; or ``label`` alone for objectives that predict the class itself).
        scores: regression values, P(class 1) ``[n]`` for a binary classifier,
            ``[n, k]`` probabilities for k classes, or class indices.
    """
    if "predictions" in names:
        return {"predictions": np.asarray(scores, dtype=np.float32).reshape(-1, 1)}
    if "probabilities" not in names:  # multi:softmax, binary:hinge: the scores are classes
        return {"label": np.asarray(scores).astype(np.int64).reshape(-1)}
    proba = np.asarray(scores, dtype=np.float32)
    if proba.ndim == 1:  # binary: P(class 1); the wrappers predict 1 when it is above 0.5
        label = (proba > 0.5).astype(np.int64)
        proba = np.stack([1 - proba, proba], axis=1)
    else:
        label = np.argmax(proba, axis=1).astype(np.int64)
    return {"probabilities": proba, "label": label}


class _BoosterRuntime(Runtime):
    """Shared ``predict``: the scores of a float32 matrix, shaped by the signature."""

    def __init__(self, signature: Signature, booster: Any) -> None:
        super().__init__(signature)
        self._booster = booster
        self._lock = threading.Lock()  # one call at a time: not every build is re-entrant

    def _scores(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        raise NotImplementedError

    def predict(self, inputs: Mapping[str, np.ndarray[Any, Any]],
                outputs: Sequence[str] | None = None) -> Arrays:
        """Run the booster and return the requested outputs."""
        x = np.asarray(inputs["input"], dtype=np.float32)
        try:
            with self._lock:
                scores = self._scores(x)
        except Exception as exc:  # the framework's own error types
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"the {self.name} booster rejected the inputs: {text[:300]}") from None
        result = booster_outputs(self.signature.output_names, scores)
        wanted = list(outputs) if outputs is not None else self.signature.output_names
        return {name: result[name] for name in wanted}


class XGBoostRuntime(_BoosterRuntime):
    """An XGBoost booster from its JSON or UBJSON file."""

    name: ClassVar[str] = "xgboost"

    @classmethod
    def load(cls, artifact: Path, signature: Signature, options: RuntimeOptions) -> Runtime:
        """Load the booster from the file's bytes (XGBoost tells JSON from UBJSON itself)."""
        try:
            import xgboost as xgb
        except ImportError:
            raise MissingDependencyError("running XGBoost models natively", "xgboost") from None

        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(artifact.read_bytes()))
        except xgb.core.XGBoostError as exc:
            raise ArtifactError(f"{artifact.name}: XGBoost cannot load it: "
                                f"{str(exc).strip().splitlines()[0][:300]}") from None
        if options.intra_op_threads:
            booster.set_param({"nthread": options.intra_op_threads})
        return cls(signature, booster)

    def _scores(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        import xgboost as xgb

        return np.asarray(self._booster.predict(xgb.DMatrix(x)))


class LightGBMRuntime(_BoosterRuntime):
    """A LightGBM booster from its text model file."""

    name: ClassVar[str] = "lightgbm"

    @classmethod
    def load(cls, artifact: Path, signature: Signature, options: RuntimeOptions) -> Runtime:
        """Load the booster from its text file."""
        try:
            import lightgbm as lgb
        except ImportError:
            raise MissingDependencyError("running LightGBM models natively", "lightgbm") from None

        try:
            booster = lgb.Booster(model_file=str(artifact))
        except lgb.basic.LightGBMError as exc:
            raise ArtifactError(f"{artifact.name}: LightGBM cannot load it: "
                                f"{str(exc).strip().splitlines()[0][:300]}") from None
        return cls(signature, booster)

    def _scores(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(self._booster.predict(x.astype(np.float64)))
