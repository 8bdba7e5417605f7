"""W2's builder, the request bodies every load run sends, and the answer checks."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from benchmarks.workloads import (
    W2_SIZES,
    Workload,
    WrongAnswerError,
    build_mlp,
    check_grpc,
    check_predict,
    check_v2,
    make_workload,
    w2_values,
)


@pytest.fixture(scope="module")
def w2(tmp_path_factory: pytest.TempPathFactory) -> Workload:
    path = build_mlp(tmp_path_factory.mktemp("w2") / "mlp.onnx")
    return make_workload("W2", "mlp", "mlp", path, w2_values())


def test_w2_is_784_2048_2048_10_fp32_with_a_free_batch_axis(w2: Workload) -> None:
    model = onnx.load(str(w2.artifact))
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    assert W2_SIZES == (784, 2048, 2048, 10)
    assert weights == {"w0": (784, 2048), "b0": (2048,), "w1": (2048, 2048), "b1": (2048,),
                       "w2": (2048, 10), "b2": (10,)}
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer)
    batch, features = model.graph.input[0].type.tensor_type.shape.dim
    assert batch.dim_param == "batch" and features.dim_value == 784
    session = ort.InferenceSession(str(w2.artifact), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.random.default_rng(0).random((3, 784), np.float32)})
    assert out[0].shape == (3, 10)
    assert np.all(np.isfinite(out[0])) and np.std(out[0]) > 0


def test_w2_is_the_same_model_every_time(tmp_path: Path, w2: Workload) -> None:
    again = make_workload("W2", "mlp", "mlp", build_mlp(tmp_path / "again.onnx"), w2_values())
    assert again.expected == w2.expected


def test_w2_input_is_short_decimals_that_float32_reads_back(w2: Workload) -> None:
    assert w2.features == 784
    assert all(len(repr(v)) <= 5 for v in w2.values)  # "0.123": compact JSON bodies
    assert w2.sample.dtype == np.float32 and w2.sample.shape == (1, 784)


def test_bodies_carry_the_sample(w2: Workload) -> None:
    predict = json.loads(w2.predict_body())
    assert np.array_equal(np.asarray(predict["data"], np.float32), w2.sample)
    (tensor,) = json.loads(w2.v2_body())["inputs"]
    assert tensor["name"] == w2.input_name and tensor["datatype"] == "FP32"
    assert tensor["shape"] == [1, 784] and len(tensor["data"]) == 784


def test_grpc_body_is_one_length_prefixed_raw_contents_request(w2: Workload) -> None:
    from tritonclient.grpc import service_pb2

    body = w2.grpc_body()
    flag, length = struct.unpack(">BI", body[:5])
    assert (flag, length) == (0, len(body) - 5)
    request = service_pb2.ModelInferRequest.FromString(body[5:])
    assert request.model_name == "mlp" and list(request.inputs[0].shape) == [1, 784]
    assert np.array_equal(np.frombuffer(request.raw_input_contents[0], np.float32),
                          w2.sample.reshape(-1))


def test_checks_accept_the_expected_answer_and_refuse_another(w2: Workload) -> None:
    good = [list(w2.expected)]
    check_predict(json.dumps({"predictions": good}).encode(), w2)
    v2 = {"outputs": [{"name": w2.output_name, "data": list(w2.expected)}]}
    check_v2(json.dumps(v2).encode(), w2)
    wrong = [[v + 0.01 for v in w2.expected]]
    with pytest.raises(WrongAnswerError, match="max \\|delta\\|"):
        check_predict(json.dumps({"predictions": wrong}).encode(), w2)
    with pytest.raises(WrongAnswerError, match="no output"):
        check_v2(json.dumps({"outputs": []}).encode(), w2)
    with pytest.raises(WrongAnswerError, match="values"):
        check_predict(json.dumps({"predictions": [[1.0]]}).encode(), w2)


def test_grpc_check_reads_raw_and_typed_contents(w2: Workload) -> None:
    from tritonclient.grpc import service_pb2

    raw = service_pb2.ModelInferResponse(model_name="mlp")
    raw.outputs.add(name=w2.output_name, datatype="FP32", shape=[1, 10])
    raw.raw_output_contents.append(np.asarray(w2.expected, np.float32).tobytes())
    check_grpc(raw.SerializeToString(), w2)
    typed = service_pb2.ModelInferResponse(model_name="mlp")
    out = typed.outputs.add(name=w2.output_name, datatype="FP32", shape=[1, 10])
    out.contents.fp32_contents.extend([0.0] * 10)
    with pytest.raises(WrongAnswerError):
        check_grpc(typed.SerializeToString(), w2)
