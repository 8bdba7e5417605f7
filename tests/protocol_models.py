"""Tiny real ONNX models for protocol tests (REST and gRPC), written with onnx.helper.

``alltypes`` passes one [-1, 3] tensor of every datatype with a typed gRPC field straight
through (Identity), so each datatype's encoding is checked end to end against ONNX Runtime.
``half`` adds one to an FP16 tensor (FP16 travels as raw contents only). ``pair`` adds two FP32
inputs and also returns their difference: two inputs, two outputs, a batch axis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ferry.formats import ImportOptions, import_model
from ferry.repository import Repository

#: V2 datatype -> ONNX element type, for every datatype with a typed gRPC field.
ONNX_TYPES = {
    "BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
    "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE, "BYTES": TensorProto.STRING,
}


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def alltypes(folder: Path) -> Path:
    inputs, outputs, nodes = [], [], []
    for datatype, onnx_type in ONNX_TYPES.items():
        low = datatype.lower()
        inputs.append(helper.make_tensor_value_info(f"in_{low}", onnx_type, ["batch", 3]))
        outputs.append(helper.make_tensor_value_info(f"out_{low}", onnx_type, ["batch", 3]))
        nodes.append(helper.make_node("Identity", [f"in_{low}"], [f"out_{low}"]))
    return _save(helper.make_graph(nodes, "alltypes", inputs, outputs), folder / "alltypes.onnx")


def half(folder: Path) -> Path:
    one = helper.make_tensor("one", TensorProto.FLOAT16, [], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])], "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 2])],
        initializer=[one],
    )
    return _save(graph, folder / "half.onnx")


def pair(folder: Path) -> Path:
    spec = ["batch", 4]
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]),
         helper.make_node("Sub", ["a", "b"], ["diff"])],
        "pair",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, spec) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, spec) for n in ("sum", "diff")],
    )
    return _save(graph, folder / "pair.onnx")


def import_all(repo: Repository, folder: Path) -> None:
    """Write each model to ``folder`` and import it into ``repo`` under its name."""
    folder.mkdir(parents=True, exist_ok=True)
    for build in (alltypes, half, pair):
        import_model(repo, build(folder), build.__name__, options=ImportOptions(sample_count=4))


def slow(folder: Path, *, width: int = 512, layers: int = 30) -> Path:
    """A deliberately slow model: ``layers`` x (width x width MatMul + Tanh) on input x.

    A few hundred rows take a good fraction of a second on one thread: long enough for
    requests to queue behind it (admission, deadlines, cancellation tests).
    """
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(
        (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), "w")
    nodes, last = [], "x"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [last, "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i}"]))
        last = f"t{i}"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(
        nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializer=[weight])
    return _save(graph, folder / "slow.onnx")
