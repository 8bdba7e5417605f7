"""A user's own scikit-learn estimator: skl2onnx has no converter for it.

It lives in an importable module (not in a test file) so that a pickle of it can be loaded
by another process too: the ``ferry serve`` subprocess of the native-runtime tests.
"""

from __future__ import annotations

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
