"""Offline graph fusion with ONNX Runtime's own optimizer, saved as a portable model.

ONNX Runtime rewrites a graph when it loads it: constant folding, redundant node removal,
Conv+BatchNorm/Add/Mul folding, MatMul+Add into Gemm (basic level), and at the extended
level operator fusions into its own kernels (Gemm+activation into FusedGemm, GELU, layer
norm, quantized MatMul patterns). :func:`fuse` runs that once, offline, and saves the
result (``SessionOptions.optimized_model_filepath``). The ``all`` level is not used: its
layout changes are specific to the CPU they were made on.

No ONNX simplifier (onnxsim) is run: for the graphs ferry produces ONNX Runtime's own
passes already fold the constants and fuse the patterns it would.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx

from ferry.errors import ConversionError

__all__ = ["FuseResult", "fuse", "node_counts"]


@dataclass(frozen=True)
class FuseResult:
    """Operator counts before and after fusion."""

    level: str
    before: dict[str, int]
    after: dict[str, int]

    def summary(self) -> str:
        """One line for the report: node counts by operator type."""
        b = ", ".join(f"{op} {n}" for op, n in sorted(self.before.items()))
        a = ", ".join(f"{op} {n}" for op, n in sorted(self.after.items()))
        return (f"{sum(self.before.values())} -> {sum(self.after.values())} nodes "
                f"({b} -> {a}); ONNX Runtime {self.level} level, no simplifier")


def node_counts(path: Path) -> dict[str, int]:
    """Nodes of the model's main graph by operator type."""
    model = onnx.load(str(path), load_external_data=False)
    return dict(Counter(node.op_type for node in model.graph.node))


def fuse(src: Path, dst: Path, *, level: str = "extended") -> FuseResult:
    """Save ``src`` as ONNX Runtime optimizes it at ``level`` ('basic' or 'extended')."""
    import onnxruntime as ort

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[level]
    so.optimized_model_filepath = str(dst)
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    try:
        ort.InferenceSession(str(src), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's own exception types
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"ONNX Runtime's optimizer failed on this model: {first}"
                              ) from None
    return FuseResult(level, node_counts(src), node_counts(dst))
