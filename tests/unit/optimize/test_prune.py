"""Pruning on small ONNX MLPs built here: magnitude sparsity, and structured pruning that
drops exactly the hidden units that do not matter and keeps the answers."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ferry.errors import InputError
from ferry.optimize.prune import dense_chains, prune_magnitude, prune_structured
from optimize_models import mlp_from_layers


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


@pytest.fixture
def mlp(tmp_path) -> onnx.ModelProto:
    """12-16-8-3, where hidden units 8..15 and 4..7 have no outgoing weights (dead units)."""
    rng = np.random.default_rng(0)
    w = [rng.standard_normal((12, 16)), rng.standard_normal((16, 8)),
         rng.standard_normal((8, 3))]
    w[1][8:] = 0.0  # units 8..15 of the first hidden layer feed nothing
    w[2][4:] = 0.0  # units 4..7 of the second feed nothing
    b = [rng.standard_normal(16), rng.standard_normal(8), rng.standard_normal(3)]
    return onnx.load(str(mlp_from_layers(tmp_path / "m.onnx", w, b)))


def test_magnitude_pruning_zeroes_the_smallest_weights_of_each_layer(tmp_path):
    rng = np.random.default_rng(4)
    mlp = onnx.load(str(mlp_from_layers(
        tmp_path / "dense.onnx", [rng.standard_normal((12, 16)), rng.standard_normal((16, 8)),
                                  rng.standard_normal((8, 3))],
        [rng.standard_normal(16), rng.standard_normal(8), rng.standard_normal(3)])))
    before = weights(mlp)
    result = prune_magnitude(mlp, 0.5)
    after = weights(mlp)
    assert result.tensors == 3 and result.sparsity >= 0.5
    for name in ("w0", "w1", "w2"):
        kept = after[name] != 0
        assert np.mean(after[name] == 0) >= 0.5
        # every kept weight is at least as large as every weight that was cut
        cut = (after[name] == 0) & (before[name] != 0)
        assert np.abs(before[name][kept]).min() >= np.abs(before[name][cut]).max()
    np.testing.assert_array_equal(after["b0"], before["b0"])  # biases untouched


def test_structured_pruning_drops_the_dead_units_and_keeps_the_answers(mlp):
    x = np.random.default_rng(1).standard_normal((5, 12)).astype(np.float32)
    expected = run(mlp, x)
    assert [c.units for c in dense_chains(mlp)] == [16, 8]
    result = prune_structured(mlp, 0.5)
    after = weights(mlp)
    assert after["w0"].shape == (12, 8) and after["b0"].shape == (8,)
    assert after["w1"].shape == (8, 4) and after["w2"].shape == (4, 3)
    assert result.units == {"h0": (16, 8), "h1": (8, 4)}
    assert result.parameters_after < result.parameters_before / 2
    onnx.checker.check_model(mlp)
    np.testing.assert_allclose(run(mlp, x), expected, rtol=1e-5, atol=1e-5)


def test_structured_pruning_follows_gemm_with_transposed_weights(tmp_path):
    rng = np.random.default_rng(2)
    w1 = rng.standard_normal((6, 4)).astype(np.float32)  # transB: (units, features)
    w1[3:] = 0.0
    b1 = np.zeros(6, np.float32)
    w2 = rng.standard_normal((6, 2)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
         helper.make_node("Sigmoid", ["h"], ["s"]),
         helper.make_node("MatMul", ["s", "w2"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    result = prune_structured(model, 0.5)
    assert result.units == {"s": (6, 3)}
    assert weights(model)["w1"].shape == (3, 4) and weights(model)["w2"].shape == (3, 2)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    assert run(model, x).shape == (3, 2)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_a_fraction_outside_zero_one_is_refused(mlp, fraction):
    with pytest.raises(InputError, match="between 0 and 1"):
        prune_magnitude(mlp, fraction)
    with pytest.raises(InputError, match="between 0 and 1"):
        prune_structured(mlp, fraction)


def test_a_model_without_prunable_layers_is_refused():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "r",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InputError, match="no prunable layers"):
        prune_magnitude(model, 0.5)
    with pytest.raises(InputError, match="no prunable layers for --structured"):
        prune_structured(model, 0.5)


def test_a_single_dense_layer_has_no_chain_to_prune_structurally(tmp_path):
    rng = np.random.default_rng(3)
    model = onnx.load(str(mlp_from_layers(tmp_path / "one.onnx", [rng.standard_normal((4, 3))],
                                          [rng.standard_normal(3)])))
    assert dense_chains(model) == []
    with pytest.raises(InputError, match="no prunable layers for --structured"):
        prune_structured(model, 0.5)
