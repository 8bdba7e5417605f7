"""The measured report: two versions side by side, on the same machine, in the same run.

For each model: file size, parameters (elements of the stored initializers, and how many
are not zero), FLOPs per row (2·K·N per MatMul/Gemm row and the same for their quantized
and fused forms; Conv from the inferred output size), nodes by operator, in-process latency
p50/p99 at batch 1 and 32 with the same thread settings, and throughput at batch 32. Then
the quality of the second against the first on the eval data: max |Δ| of the outputs, top-1
agreement for classifiers, accuracy when labels are given, and the drop in points.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from pydantic import BaseModel, ConfigDict, Field

from ferry.optimize.evaluation import EvalData
from ferry.runtimes import Arrays, Runtime, RuntimeOptions, load_runtime
from ferry.signature import Signature

__all__ = [
    "BATCHES", "Figures", "Quality", "Report", "measure", "predict_all", "quality",
    "quality_lines", "report_rows",
]

BATCHES = (1, 32)
#: Per batch size: stop timing after this many runs (or the time given to measure()).
_RUNS = 200
_MATMUL_LIKE = frozenset({"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "FusedGemm",
                          "FusedMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"})
_CONV_LIKE = frozenset({"Conv", "ConvInteger", "QLinearConv", "FusedConv"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Figures(_Frozen):
    """What one version costs."""

    file_bytes: int
    compressed_bytes: int = Field(description="the artifact deflated (zlib level 6): "
                                  "what zeros from pruning save on disk and on the wire")
    parameters: int
    nonzero_parameters: int
    flops: int = Field(description="floating/integer multiply-adds x 2 per row")
    nodes: dict[str, int]
    latency_ms: dict[str, dict[str, float]] = Field(
        description="batch size -> {'p50', 'p99'} in milliseconds")
    throughput: float = Field(description=f"rows per second at batch {BATCHES[-1]}")


class Quality(_Frozen):
    """How the second version answers compared with the first, on the eval rows."""

    rows: int
    origin: str
    max_abs_diff: float
    max_rel_diff: float = Field(description="max |Δ| / max |first|")
    top1_agreement: float | None = Field(description="classifiers: share of rows whose "
                                         "top class is the same")
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    drop: float | None = Field(description="points lost: of accuracy when labels are given, "
                               "else of top-1 agreement (100 - agreement); None otherwise")
    measure: str = Field(description="'accuracy', 'top-1 agreement' or 'none'")


class Report(_Frozen):
    """Two versions measured side by side."""

    before: Figures
    after: Figures
    quality: Quality
    threads: int = Field(description="intra-op threads both ran with (0 = one per usable CPU)")


def measure(artifact: Path, runtime: str, signature: Signature, data: EvalData, *,
            threads: int = 0, seconds: float = 1.0) -> Figures:
    """Figures of one ONNX artifact; timing runs on rows of ``data``.

    Each batch size is timed for up to 200 runs or ``seconds``, whichever ends first.
    """
    model = onnx.load(str(artifact))
    params, nonzero = _parameters(model)
    raw = artifact.read_bytes()
    with _load(artifact, runtime, signature, threads) as loaded:
        latency, throughput = _timing(loaded, data, seconds)
    return Figures(
        file_bytes=len(raw), compressed_bytes=len(zlib.compress(raw, 6)),
        parameters=params, nonzero_parameters=nonzero, flops=_flops(model, data.inputs),
        nodes=dict(sorted(Counter(n.op_type for n in model.graph.node).items())),
        latency_ms=latency, throughput=throughput,
    )


def _load(artifact: Path, runtime: str, signature: Signature, threads: int) -> Runtime:
    return load_runtime(runtime, artifact, signature, RuntimeOptions(intra_op_threads=threads))


def quality(before: Arrays, after: Arrays, signature: Signature,
            labels: np.ndarray[Any, Any] | None, origin: str) -> Quality:
    """Compare two versions' outputs on the same rows."""
    diff = rel = 0.0
    for spec in signature.outputs:
        a, b = before[spec.name], after[spec.name]
        if a.dtype.kind == "f" and a.size:
            d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            scale = float(np.max(np.abs(a))) or 1.0
            diff, rel = max(diff, d), max(rel, d / scale)
    first = signature.outputs[0].name
    top_a, top_b = _top1(before[first]), _top1(after[first])
    rows = int(before[first].shape[0]) if before[first].ndim else 0
    agreement = acc_a = acc_b = drop = None
    measure_name = "none"
    if top_a is not None and top_b is not None:
        agreement = float(np.mean(top_a == top_b))
        drop, measure_name = 100.0 * (1.0 - agreement), "top-1 agreement"
        if labels is not None:
            acc_a = float(np.mean(top_a == labels))
            acc_b = float(np.mean(top_b == labels))
            drop, measure_name = 100.0 * (acc_a - acc_b), "accuracy"
    return Quality(rows=rows, origin=origin, max_abs_diff=diff, max_rel_diff=rel,
                   top1_agreement=agreement, accuracy_before=acc_a, accuracy_after=acc_b,
                   drop=drop, measure=measure_name)


def _top1(output: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """Each row's class: argmax of scores (2-D, several columns), or an integer label."""
    if output.dtype.kind == "f" and output.ndim == 2 and output.shape[1] > 1:
        top: np.ndarray[Any, Any] = np.argmax(output, axis=1)
        return top
    if output.dtype.kind in "iu" and output.ndim == 1:
        return output
    return None


def predict_all(runtime: Runtime, inputs: Arrays, batch: int = 256) -> Arrays:
    """Run every row, ``batch`` rows at a time, and join the outputs."""
    rows = int(next(iter(inputs.values())).shape[0])
    parts = [runtime.predict({k: v[i:i + batch] for k, v in inputs.items()})
             for i in range(0, rows, batch)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _batch_of(inputs: Arrays, size: int) -> Arrays:
    rows = int(next(iter(inputs.values())).shape[0])
    index = np.arange(size) % rows
    return {name: value[index] for name, value in inputs.items()}


def _timing(runtime: Runtime, data: EvalData, seconds: float
            ) -> tuple[dict[str, dict[str, float]], float]:
    latency: dict[str, dict[str, float]] = {}
    mean_last = 0.0
    for size in BATCHES:
        feed = _batch_of(data.inputs, size)
        for _ in range(3):
            runtime.predict(feed)
        times = list(_runs(runtime, feed, seconds))
        latency[str(size)] = {"p50": float(np.percentile(times, 50)) * 1e3,
                              "p99": float(np.percentile(times, 99)) * 1e3}
        mean_last = float(np.mean(times))
    return latency, BATCHES[-1] / mean_last if mean_last else 0.0


def _runs(runtime: Runtime, feed: Arrays, seconds: float) -> Iterator[float]:
    deadline = time.perf_counter() + seconds
    for _ in range(_RUNS):
        start = time.perf_counter()
        runtime.predict(feed)
        end = time.perf_counter()
        yield end - start
        if end > deadline:
            return


def _parameters(model: onnx.ModelProto) -> tuple[int, int]:
    total = nonzero = 0
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        total += array.size
        nonzero += int(np.count_nonzero(array))
    return total, nonzero


def _flops(model: onnx.ModelProto, sample: Arrays) -> int:
    """Multiply-adds x 2 per row of the MatMul/Gemm/Conv nodes (and their fused forms)."""
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    # A weight reached through DequantizeLinear (QDQ) or a Cast (fp16) keeps its shape.
    for node in model.graph.node:
        if node.op_type in ("DequantizeLinear", "Cast") and node.input[0] in shapes:
            shapes[node.output[0]] = shapes[node.input[0]]
    conv_out = _conv_output_sizes(model, sample)
    flops = 0
    for node in model.graph.node:
        if node.op_type in _MATMUL_LIKE:
            weight = _weight_input(node)
            dims = shapes.get(weight or "")
            if dims and len(dims) >= 2:
                flops += 2 * int(np.prod(dims[-2:]))
        elif node.op_type in _CONV_LIKE:
            weight = _weight_input(node)
            dims = shapes.get(weight or "")
            if dims and node.output[0] in conv_out:
                flops += 2 * int(np.prod(dims)) * conv_out[node.output[0]]
    return flops


def _weight_input(node: onnx.NodeProto) -> str | None:
    # QLinearMatMul/QLinearConv: (a, a_scale, a_zp, b, ...); the others: (a, b, ...).
    index = 3 if node.op_type in ("QLinearMatMul", "QLinearConv") else 1
    return node.input[index] if len(node.input) > index else None


def _conv_output_sizes(model: onnx.ModelProto, sample: Arrays) -> dict[str, int]:
    """Spatial size (product of the dims after N, C) of each Conv output, for one row.

    ONNX Runtime runs the model once on one row with every convolution's output made a
    graph output (no graph optimizations): onnx's shape inference does not know ONNX
    Runtime's own operators (FusedConv) and stops at some float16 graphs.
    """
    import onnxruntime as ort

    wanted = [n.output[0] for n in model.graph.node if n.op_type in _CONV_LIKE]
    if not wanted:
        return {}
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    known = {o.name for o in copy.graph.output}
    copy.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name)
                             for name in wanted if name not in known)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(copy.SerializeToString(), sess_options=so,
                                       providers=["CPUExecutionProvider"])
        values = session.run(wanted, {k: v[:1] for k, v in sample.items()})
    except Exception:  # FLOPs of convolutions are then left out
        return {}
    return {name: int(np.prod(value.shape[2:])) for name, value in zip(wanted, values,
                                                                      strict=True)
            if value.ndim >= 3}


def report_rows(report: Report) -> list[tuple[str, str, str, str]]:
    """(figure, before, after, after/before) rows of the printed table."""
    b, a = report.before, report.after

    def row(label: str, x: float, y: float, fmt: str) -> tuple[str, str, str, str]:
        return (label, format(x, fmt), format(y, fmt), f"{y / x:.2f}x" if x else "-")

    rows = [
        row("file size (bytes)", b.file_bytes, a.file_bytes, ",d"),
        row("deflated size (bytes)", b.compressed_bytes, a.compressed_bytes, ",d"),
        row("parameters", b.parameters, a.parameters, ",d"),
        row("non-zero parameters", b.nonzero_parameters, a.nonzero_parameters, ",d"),
        row("FLOPs per row", b.flops, a.flops, ",d"),
        row("nodes", sum(b.nodes.values()), sum(a.nodes.values()), "d"),
    ]
    for size in map(str, BATCHES):
        for q in ("p50", "p99"):
            rows.append(row(f"latency {q} batch {size} (ms)", b.latency_ms[size][q],
                            a.latency_ms[size][q], ".3f"))
    rows.append(row(f"throughput batch {BATCHES[-1]} (rows/s)", b.throughput, a.throughput,
                    ",.0f"))
    return rows


def quality_lines(report: Report) -> list[str]:
    """The quality figures, in words."""
    q = report.quality
    lines = [f"quality on {q.origin}: max |Δ| {q.max_abs_diff:.3g} "
             f"(relative {q.max_rel_diff:.3g})"]
    if q.top1_agreement is not None:
        lines.append(f"top-1 agreement {q.top1_agreement:.2%}")
    if q.accuracy_before is not None and q.accuracy_after is not None:
        lines.append(f"accuracy {q.accuracy_before:.2%} -> {q.accuracy_after:.2%}")
    if q.drop is not None:
        lines.append(f"drop {q.drop:.2f} points of {q.measure}")
    return lines
