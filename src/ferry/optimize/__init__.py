"""Model optimization: pruning, quantization and fusion, each written as a new version.

``ferry optimize`` runs :func:`optimize_version`; ``ferry compare`` runs
:func:`compare_versions`. ONNX Runtime, onnx and numpy do the work; they are imported by
the step modules (quantization's and fusion's ONNX Runtime tools only inside functions).
"""

from ferry.optimize.evaluation import EvalData, read_eval
from ferry.optimize.pipeline import (
    ORDER,
    OptimizeOptions,
    OptimizeResult,
    compare_versions,
    optimize_version,
)
from ferry.optimize.report import Figures, Quality, Report, quality_lines, report_rows

__all__ = [
    "ORDER",
    "EvalData",
    "Figures",
    "OptimizeOptions",
    "OptimizeResult",
    "Quality",
    "Report",
    "compare_versions",
    "optimize_version",
    "quality_lines",
    "read_eval",
    "report_rows",
]
