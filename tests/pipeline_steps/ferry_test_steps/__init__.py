"""A custom pipeline step: clip class scores into [low, high] and renormalise each row.

Its entry point (``ferry.pipeline_steps`` group, name ``clip_scores``) names the class;
ferry calls it with the step's options from the pipeline file (``low``, ``high``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ferry.signature import TensorSpec


class ClipScores:
    """``scores`` (float, [-1, C]) -> ``clipped``: clipped to [low, high], rows summing to 1."""

    def __init__(self, low: float = 0.0, high: float = 1.0) -> None:
        if not low < high:
            raise ValueError(f"low ({low}) must be below high ({high})")
        self.low, self.high = low, high

    def outputs(self, inputs: Mapping[str, TensorSpec]) -> Sequence[TensorSpec]:
        if set(inputs) != {"scores"}:
            raise ValueError(f"takes one input 'scores', got {', '.join(inputs)}")
        spec = inputs["scores"]
        if spec.datatype not in ("FP32", "FP64") or len(spec.shape) != 2:
            raise ValueError(f"input 'scores' must be FP32 or FP64 [-1, C], got {spec.describe()}")
        return [TensorSpec(name="clipped", datatype=spec.datatype, shape=spec.shape)]

    def __call__(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        x = np.clip(inputs["scores"], self.low, self.high)
        return {"clipped": x / x.sum(axis=-1, keepdims=True)}
