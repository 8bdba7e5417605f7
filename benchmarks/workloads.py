"""The two workloads of the benchmark, the request bodies they send, and how answers are checked.

W1 is the seed network (64 -> 64 -> 64 -> 10, the tutorial's Keras Dense 64-64-10 trained on
scikit-learn's digits by ``examples/seed/train.py`` and imported with ``ferry import``): tiny
compute, so it measures the serving stack. W2 is a compute-heavy MLP (784 -> 2048 -> 2048 -> 10,
FP32, random weights) built here as ONNX: it measures how close a server gets to the runtime.

Every load run sends one fixed batch-1 request. Its answer is checked against raw ONNX Runtime
on the same artifact before the run (``check_*``), so a fast server that answers wrongly is
caught rather than measured.
"""

from __future__ import annotations

import itertools
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: W2's layer widths: input, two hidden layers, classes.
W2_SIZES: tuple[int, ...] = (784, 2048, 2048, 10)
W2_INPUT = "input"
W2_OUTPUT = "logits"

#: Answers may differ from raw ONNX Runtime by this much: a server may batch the request with
#: others, and a different batch size can change the order of float additions inside MatMul.
#: Keras (the Flask seed) differs from ONNX Runtime by its own float ordering too.
ATOL = 1e-4
RTOL = 1e-4

_GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class Workload:
    """One model as the benchmark sends it: the fixed request and the expected answer."""

    key: str
    title: str
    model: str
    artifact: Path
    input_name: str
    output_name: str
    values: tuple[float, ...]
    expected: tuple[float, ...]

    @property
    def features(self) -> int:
        """Width of the one input row."""
        return len(self.values)

    @property
    def sample(self) -> np.ndarray[Any, Any]:
        """The request's input as the server must see it: shape (1, features), float32."""
        return np.asarray(self.values, dtype=np.float32).reshape(1, -1)

    def predict_body(self) -> bytes:
        """The seed's ``/predict`` body: ``{"data": [[...]]}``."""
        return json.dumps({"data": [list(self.values)]}).encode()

    def v2_body(self) -> bytes:
        """An Open Inference Protocol (V2) JSON infer body with one FP32 tensor."""
        tensor = {"name": self.input_name, "shape": [1, self.features], "datatype": "FP32",
                  "data": list(self.values)}
        return json.dumps({"inputs": [tensor]}).encode()

    def v2_binary_body(self) -> tuple[bytes, int]:
        """A V2 infer body with the input as binary tensor data, and its JSON header's length.

        The answer is asked for as JSON (``binary_data_output`` false), so it is checked like
        a V2 JSON answer.
        """
        raw = self.sample.tobytes()
        tensor = {"name": self.input_name, "shape": [1, self.features], "datatype": "FP32",
                  "parameters": {"binary_data_size": len(raw)}}
        header = json.dumps({"inputs": [tensor],
                             "parameters": {"binary_data_output": False}}).encode()
        return header + raw, len(header)

    def grpc_message(self) -> bytes:
        """A serialized ``ModelInferRequest`` carrying the input in ``raw_input_contents``.

        Built with the reference client's own protobuf classes (tritonclient), as a client of
        any V2 server would build it.
        """
        from tritonclient.grpc import service_pb2

        request = service_pb2.ModelInferRequest(model_name=self.model)
        tensor = request.inputs.add()
        tensor.name = self.input_name
        tensor.datatype = "FP32"
        tensor.shape.extend([1, self.features])
        request.raw_input_contents.append(self.sample.tobytes())
        return bytes(request.SerializeToString())

    def grpc_answer(self, version: str = "1") -> bytes:
        """The serialized ``ModelInferResponse`` ferry answers to :meth:`grpc_message`.

        The same fields as ferry's (``convert.encode_response`` for a raw request): model name
        and version, one output (name, FP32, shape ``[1, outputs]``) and its values, the
        expected ones, in ``raw_output_contents``. The no-op gRPC servicer answers it to every
        call, so its answers are as big as ferry's and pass :func:`check_grpc`.
        """
        from tritonclient.grpc import service_pb2

        response = service_pb2.ModelInferResponse(model_name=self.model, model_version=version)
        output = response.outputs.add(name=self.output_name, datatype="FP32")
        output.shape.extend([1, len(self.expected)])
        response.raw_output_contents.append(np.asarray(self.expected, np.float32).tobytes())
        return bytes(response.SerializeToString())

    def grpc_body(self) -> bytes:
        """The HTTP/2 body of a unary gRPC call: the message with gRPC's 5-byte frame prefix."""
        return grpc_frame(self.grpc_message())


def grpc_frame(message: bytes) -> bytes:
    """Prefix a message as gRPC's length-prefixed framing does: flag 0, 4-byte big-endian size."""
    return struct.pack(">BI", 0, len(message)) + message


def grpc_method() -> str:
    """The HTTP/2 path of the V2 ``ModelInfer`` call."""
    return _GRPC_METHOD


# ------------------------------------------------------------------------- checking answers


class WrongAnswerError(AssertionError):
    """A server answered the benchmark's request with something other than the model's output."""


def _close(got: np.ndarray[Any, Any], workload: Workload, where: str) -> None:
    want = np.asarray(workload.expected, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    if got.shape != want.shape:
        raise WrongAnswerError(f"{where}: {got.size} values, expected {want.size}")
    if not np.allclose(got, want, rtol=RTOL, atol=ATOL):
        worst = float(np.max(np.abs(got - want)))
        raise WrongAnswerError(f"{where}: max |delta| {worst:.3g} from raw ONNX Runtime")


def check_predict(body: bytes, workload: Workload) -> None:
    """Check a ``/predict`` answer: ``{"predictions": [[...]]}`` equal to raw ORT's output."""
    doc = json.loads(body)
    if not isinstance(doc, dict) or "predictions" not in doc:
        raise WrongAnswerError(f"/predict answer has no 'predictions': {body[:200]!r}")
    _close(np.asarray(doc["predictions"]), workload, "/predict predictions")


def check_v2(body: bytes, workload: Workload) -> None:
    """Check a V2 JSON infer answer: the model's output tensor, equal to raw ORT's."""
    doc = json.loads(body)
    outputs = {o.get("name"): o for o in doc.get("outputs", [])} if isinstance(doc, dict) else {}
    if workload.output_name not in outputs:
        raise WrongAnswerError(f"V2 answer has no output {workload.output_name!r}: "
                               f"{body[:200]!r}")
    _close(np.asarray(outputs[workload.output_name]["data"]), workload, "V2 output")


def check_grpc(message: bytes, workload: Workload) -> None:
    """Check a serialized ``ModelInferResponse`` (raw or typed contents) against raw ORT."""
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse.FromString(message)
    names = [o.name for o in response.outputs]
    if workload.output_name not in names:
        raise WrongAnswerError(f"gRPC answer has no output {workload.output_name!r}: {names}")
    index = names.index(workload.output_name)
    if response.raw_output_contents:
        got = np.frombuffer(response.raw_output_contents[index], dtype=np.float32)
    else:
        got = np.asarray(response.outputs[index].contents.fp32_contents, dtype=np.float32)
    _close(got, workload, "gRPC output")


# ------------------------------------------------------------------------- building models


def build_mlp(path: Path, sizes: tuple[int, ...] = W2_SIZES, *, seed: int = 0) -> Path:
    """Write W2: an FP32 MLP of ``sizes`` (Gemm + Relu layers, logits out) with random weights.

    Weights are He-scaled so activations stay in a sane range; the batch axis is symbolic, so
    servers may batch it. Built with ``onnx.helper`` rather than a framework, so that the model
    is exactly this graph and nothing else.

    Returns:
        ``path``, written atomically enough for a scratch directory (one ``onnx.save``).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, initializers = [], []
    current = W2_INPUT
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        weight = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
        weight *= np.float32(np.sqrt(2.0 / fan_in))
        bias = (rng.standard_normal(fan_out, dtype=np.float32) * np.float32(0.01))
        initializers += [numpy_helper.from_array(weight, f"w{layer}"),
                         numpy_helper.from_array(bias, f"b{layer}")]
        last = layer == len(sizes) - 2
        gemm_out = W2_OUTPUT if last else f"h{layer}"
        nodes.append(helper.make_node("Gemm", [current, f"w{layer}", f"b{layer}"], [gemm_out]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"a{layer}"]))
            current = f"a{layer}"
    graph = helper.make_graph(
        nodes, "w2_mlp",
        [helper.make_tensor_value_info(W2_INPUT, TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info(W2_OUTPUT, TensorProto.FLOAT, ["batch", sizes[-1]])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="ferry-benchmarks")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def w2_values(features: int = W2_SIZES[0], *, seed: int = 1) -> tuple[float, ...]:
    """W2's request input: pixel-like values in [0, 1) with three decimals (short JSON)."""
    rng = np.random.default_rng(seed)
    return tuple(float(v) / 1000.0 for v in rng.integers(0, 1000, size=features))


def seed_values(sample_json: Path) -> tuple[float, ...]:
    """W1's request input: the one digit of ``examples/seed/sample.json``."""
    doc = json.loads(sample_json.read_text(encoding="utf-8"))
    return tuple(float(v) for v in doc["data"][0])


def make_workload(key: str, title: str, model: str, artifact: Path,
                  values: tuple[float, ...]) -> Workload:
    """Describe a workload, computing its expected answer with raw ONNX Runtime (one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(artifact), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name
    sample = np.asarray(values, dtype=np.float32).reshape(1, -1)
    expected = session.run([output_name], {input_name: sample})[0].reshape(-1)
    return Workload(key=key, title=title, model=model, artifact=artifact,
                    input_name=input_name, output_name=output_name, values=values,
                    expected=tuple(float(v) for v in expected))
