"""A user's own scikit-learn estimator: skl2onnx has no converter for it.

It lives in an importable module (not in a test file) so that a pickle of it can be loaded
by another process too: the ``ferry serve`` subprocess of the native-runtime tests.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class NearestMeanClassifier(ClassifierMixin, BaseEstimator):
    """Predicts the class whose mean row is closest; probabilities from a softmax of -distance."""

    def fit(self, x: Any, y: Any) -> NearestMeanClassifier:
        x = np.asarray(x, dtype=np.float64)
        self.classes_ = np.unique(y)
        self.means_ = np.stack([x[np.asarray(y) == c].mean(axis=0) for c in self.classes_])
        self.n_features_in_ = x.shape[1]
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        distance = np.linalg.norm(np.asarray(x, dtype=np.float64)[:, None, :] - self.means_,
                                  axis=2)
        scores = np.exp(-(distance - distance.min(axis=1, keepdims=True)))
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(x), axis=1)]


class BrokenOnDemandClassifier(NearestMeanClassifier):
    """A deliberately faulty model for the circuit-breaker tests (a fake, named as one).

    It answers like :class:`NearestMeanClassifier` while the file ``flag`` does not exist.
    While it does, and holds nothing, ``predict`` returns labels that are not of its
    declared type (the string "broken" where its integer classes belong): a bug of the
    model that the server can only answer with a 500. While it holds ``slow``, every call
    takes 0.2 s longer. Deleting the file mends it.
    """

    def __init__(self, flag: str = "") -> None:
        self.flag = flag

    def _fault(self) -> str | None:
        try:
            with open(self.flag, encoding="utf-8") as file:
                return file.read().strip()
        except OSError:  # no flag file (or none named): healthy
            return None

    def predict_proba(self, x: Any) -> np.ndarray:
        if self._fault() == "slow":
            time.sleep(0.2)
        return super().predict_proba(x)

    def predict(self, x: Any) -> np.ndarray:
        labels = super().predict(x)
        if self._fault() == "":
            return np.full(labels.shape, "broken", dtype=object)
        return labels
