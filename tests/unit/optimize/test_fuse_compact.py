"""Fusion (ONNX Runtime's offline optimizer) and compaction on small ONNX MLPs built here."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from ferry.errors import ConversionError
from ferry.optimize.compact import compact
from ferry.optimize.fuse import fuse
from optimize_models import mlp_from_layers


def run(path_or_bytes, x):
    source = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.fixture
def mlp(tmp_path):
    rng = np.random.default_rng(0)
    return mlp_from_layers(tmp_path / "m.onnx",
                           [rng.standard_normal((6, 8)), rng.standard_normal((8, 3))],
                           [rng.standard_normal(8), rng.standard_normal(3)])


def test_fusion_saves_fewer_nodes_that_answer_the_same(mlp, tmp_path):
    result = fuse(mlp, tmp_path / "fused.onnx")
    assert result.before == {"MatMul": 2, "Add": 2, "Relu": 1}
    assert sum(result.after.values()) < 5 and "FusedGemm" in result.after
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(run(tmp_path / "fused.onnx", x), run(mlp, x), rtol=1e-5,
                               atol=1e-5)
    assert "no simplifier" in result.summary()


def test_a_model_onnx_runtime_cannot_load_is_a_conversion_error(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["y"], domain="example.com")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("example.com", 1)])
    onnx.save(model, str(tmp_path / "odd.onnx"))
    with pytest.raises(ConversionError, match="ONNX Runtime's optimizer failed on this model"):
        fuse(tmp_path / "odd.onnx", tmp_path / "out.onnx")


def test_compaction_keeps_the_signature_and_the_answers(mlp):
    model = onnx.load(str(mlp))
    x = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    expected = run(model.SerializeToString(), x)
    model.graph.value_info.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT,
                                                                ["n", 8]))
    result = compact(model)
    assert result.after < result.before
    names = {name for node in model.graph.node for name in [*node.input, *node.output]}
    assert {"x", "scores"} <= names and "h0" not in names and not model.graph.value_info
    np.testing.assert_array_equal(run(model.SerializeToString(), x), expected)
