"""ONNX Runtime behind the Runtime interface, and the parity check's refusal."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ferry.errors import ArtifactError, InputError, ParityError
from ferry.formats.onnx import onnx_signature
from ferry.formats.parity import compare
from ferry.runtimes import RuntimeOptions, load_runtime
from ferry.runtimes.onnxruntime import OrtRuntime
from ferry.signature import Signature, TensorSpec


def _save(tmp_path, nodes, inputs, outputs, name="m.onnx", initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / name))
    return tmp_path / name, onnx_signature(model)


def test_options_reach_the_session(mlp_path):
    sig = onnx_signature(onnx.load(str(mlp_path)))
    options = RuntimeOptions(intra_op_threads=1, inter_op_threads=1, graph_optimization="basic")
    runtime = OrtRuntime.load(mlp_path, sig, options)
    so = runtime._session.get_session_options()
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
    assert runtime.supports_batching


def test_outputs_can_be_selected(tmp_path):
    path, sig = _save(
        tmp_path,
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["b"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n"]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n"])],
    )
    with load_runtime("onnxruntime", path, sig) as rt:
        out = rt.predict({"x": np.array([-1.0, 2.0], np.float32)}, ["b"])
    assert list(out) == ["b"]
    np.testing.assert_array_equal(out["b"], [1.0, -2.0])


def test_bytes_tensors_round_trip(tmp_path):
    path, sig = _save(
        tmp_path, [helper.make_node("Identity", ["s"], ["t"])],
        [helper.make_tensor_value_info("s", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, ["n"])],
    )
    assert sig.inputs[0].datatype == "BYTES"
    with load_runtime("onnxruntime", path, sig) as rt:
        out = rt.predict({"s": np.array([b"h\xc3\xa9", b"x"], dtype=object)})["t"]
    assert out.tolist() == ["hé".encode(), b"x"]


def test_data_dependent_failures_are_input_errors(tmp_path):
    table = helper.make_tensor("table", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    path, sig = _save(
        tmp_path, [helper.make_node("Gather", ["table", "i"], ["v"])],
        [helper.make_tensor_value_info("i", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, ["n"])],
        initializers=[table],
    )
    with load_runtime("onnxruntime", path, sig) as rt:
        np.testing.assert_array_equal(rt.predict({"i": np.array([2, 0])})["v"], [3.0, 1.0])
        with pytest.raises(InputError, match="the model rejected these input values"):
            rt.predict({"i": np.array([7])})


def test_a_signature_that_does_not_match_the_graph_is_refused(mlp_path):
    wrong = Signature(inputs=(TensorSpec(name="pixels", datatype="FP32", shape=(-1, 4)),),
                      outputs=(TensorSpec(name="scores", datatype="FP32", shape=(-1, 3)),))
    with pytest.raises(ArtifactError, match=r"inputs \['x'\] do not match the manifest's \['pixels'\]"):
        load_runtime("onnxruntime", mlp_path, wrong)


def test_unloadable_artifact(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07junk")
    sig = Signature(inputs=(TensorSpec(name="x", datatype="FP32", shape=(1,)),),
                    outputs=(TensorSpec(name="y", datatype="FP32", shape=(1,)),))
    with pytest.raises(ArtifactError, match="ONNX Runtime cannot load junk.onnx"):
        load_runtime("onnxruntime", tmp_path / "junk.onnx", sig)


def test_unknown_runtime_name(mlp_path):
    sig = onnx_signature(onnx.load(str(mlp_path)))
    with pytest.raises(ArtifactError, match="unknown runtime 'tensorrt'"):
        load_runtime("tensorrt", mlp_path, sig)


def test_parity_refuses_with_the_figures(mlp_path):
    sig = onnx_signature(onnx.load(str(mlp_path)))
    x = {"x": np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)}
    with load_runtime("onnxruntime", mlp_path, sig) as rt:
        truth = rt.predict(x)
        report = compare(sig, truth, rt, x, method="m", origin="o", tolerance=1e-6)
        assert report.passed and report.max_abs_diff["scores"] == 0.0
        shifted = {"scores": truth["scores"] + np.float32(0.01)}
        with pytest.raises(ParityError) as err:
            compare(sig, shifted, rt, x, method="m", origin="10 test rows", tolerance=1e-3)
    message = str(err.value)
    assert "parity check failed on 10 samples (10 test rows)" in message
    assert "output 'scores': max |Δ| = 0.01 exceeds tolerance 0.001" in message
