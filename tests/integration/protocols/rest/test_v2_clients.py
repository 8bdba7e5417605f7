"""The reference clients, unchanged, against a real ferry REST server (issue 4, deliver 2).

tritonclient.http with JSON and binary tensors for every datatype, FP16 and two-output
models, requested outputs, ids and parameters; KServe's InferenceRESTClient for V2 (JSON and
binary) and V1 (TF Serving's :predict); health, metadata and the repository extension.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from protocol_models import ONNX_TYPES

SAMPLES = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 7, 255], [1, 2, 3]], dtype=np.uint8),
    "UINT16": np.array([[0, 7, 65535], [1, 2, 3]], dtype=np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1], [1, 2, 3]], dtype=np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1], [1, 2, 3]], dtype=np.uint64),
    "INT8": np.array([[-128, 0, 127], [1, -2, 3]], dtype=np.int8),
    "INT16": np.array([[-32768, 0, 32767], [1, -2, 3]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1], [1, -2, 3]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1], [1, -2, 3]], dtype=np.int64),
    "FP32": np.array([[0.5, -1.25, 3e38], [1, 2, 3]], dtype=np.float32),
    "FP64": np.array([[0.1, -1e300, 2.5], [1, 2, 3]], dtype=np.float64),
    "BYTES": np.array([[b"a", b"", "ü".encode()], [b"x y", b"\x00z", b"q"]], dtype=object),
}


@pytest.fixture(scope="module")
def client(server):
    with triton.InferenceServerClient(server.url.removeprefix("http://")) as c:
        yield c


def _alltypes_inputs(binary: bool) -> list[triton.InferInput]:
    inputs = []
    for datatype in ONNX_TYPES:
        tensor = triton.InferInput(f"in_{datatype.lower()}", [2, 3], datatype)
        tensor.set_data_from_numpy(SAMPLES[datatype], binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_round_trips_every_datatype(client, binary):
    outputs = [triton.InferRequestedOutput(f"out_{d.lower()}", binary_data=binary)
               for d in ONNX_TYPES]
    result = client.infer("alltypes", _alltypes_inputs(binary), outputs=outputs,
                          request_id="req-7")
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_name"] == "alltypes"
    for datatype in ONNX_TYPES:
        got = result.as_numpy(f"out_{datatype.lower()}")
        want = SAMPLES[datatype]
        assert got.shape == (2, 3)
        if datatype == "BYTES":  # tritonclient gives JSON strings as str, binary as bytes
            texts = [[v.decode() for v in row] for row in want.tolist()]
            assert got.tolist() == (want.tolist() if binary else texts)
        else:
            assert got.dtype == want.dtype and np.array_equal(got, want)


def test_tritonclient_binary_inputs_json_outputs_and_the_reverse(client):
    result = client.infer("alltypes", _alltypes_inputs(True), outputs=[
        triton.InferRequestedOutput("out_fp32", binary_data=False),
        triton.InferRequestedOutput("out_bytes", binary_data=True)])
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["out_fp32", "out_bytes"]  # only the requested outputs
    assert np.array_equal(result.as_numpy("out_fp32"), SAMPLES["FP32"])
    assert result.as_numpy("out_bytes").tolist() == SAMPLES["BYTES"].tolist()


def test_tritonclient_fp16_binary(client):
    x = np.array([[0.5, -2.0], [1.0, 65504.0 - 32]], dtype=np.float16)
    tensor = triton.InferInput("x", [2, 2], "FP16")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = client.infer("half", [tensor])
    y = result.as_numpy("y")
    assert y.dtype == np.float16 and np.array_equal(y, x + np.float16(1))


def test_tritonclient_two_inputs_two_outputs(client):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.full((2, 4), 0.5, dtype=np.float32)
    inputs = [triton.InferInput("a", [2, 4], "FP32"), triton.InferInput("b", [2, 4], "FP32")]
    inputs[0].set_data_from_numpy(a, binary_data=True)
    inputs[1].set_data_from_numpy(b, binary_data=False)
    result = client.infer("pair", inputs, parameters={"custom": "yes"})
    assert np.array_equal(result.as_numpy("sum"), a + b)
    assert np.array_equal(result.as_numpy("diff"), a - b)


def test_tritonclient_health_metadata_and_versions(client, server):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("pair") and client.is_model_ready("pair", "1")
    assert not client.is_model_ready("pair", "99")
    meta = client.get_server_metadata()
    assert meta["name"] == "ferry" and "binary_tensor_data" in meta["extensions"]
    assert "model_repository" in meta["extensions"]
    model = client.get_model_metadata("pair")
    assert model["name"] == "pair" and model["versions"] == ["1"]
    assert model["platform"] == "onnx_onnxv1"
    assert [(t["name"], t["datatype"], t["shape"]) for t in model["inputs"]] == [
        ("a", "FP32", [-1, 4]), ("b", "FP32", [-1, 4])]
    assert client.get_model_metadata("pair", "1")["inputs"] == model["inputs"]
    with pytest.raises(InferenceServerException, match="unknown-model"):
        client.get_model_metadata("unknown-model")


def test_tritonclient_repository_index_unload_and_load(client):
    index = {row["name"]: row for row in client.get_model_repository_index()}
    assert {"alltypes", "half", "pair", "mlp"} <= set(index)
    assert index["pair"]["state"] == "READY"
    client.unload_model("half")
    assert not client.is_model_ready("half")
    ready = {row["name"] for row in client.get_model_repository_index()
             if row["state"] == "READY"}
    assert "half" not in ready
    client.load_model("half")
    assert client.is_model_ready("half")
    x = np.zeros((1, 2), dtype=np.float16)
    tensor = triton.InferInput("x", [1, 2], "FP16")
    tensor.set_data_from_numpy(x)
    assert client.infer("half", [tensor]).as_numpy("y").tolist() == [[1.0, 1.0]]


# KServe's client runs in a subprocess: kserve and tritonclient.grpc both register the protobuf
# package `inference` in protobuf's default pool, so one process cannot import both, and
# other tests in this session use tritonclient.grpc.
_KSERVE = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

async def main(url, binary):
    out = {}
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    try:
        a = np.arange(8, dtype=np.float32).reshape(2, 4)
        inputs = [InferInput("a", [2, 4], "FP32"), InferInput("b", [2, 4], "FP32")]
        inputs[0].set_data_from_numpy(a, binary_data=binary)
        inputs[1].set_data_from_numpy(a, binary_data=binary)
        response = await client.infer(url, InferRequest("pair", inputs, request_id="k-1"),
                                      model_name="pair")
        out["id"] = response.id
        out["outputs"] = {o.name: o.as_numpy().tolist() for o in response.outputs}
        out["live"] = await client.is_server_live(url)
        out["ready"] = await client.is_server_ready(url)
        out["model_ready"] = await client.is_model_ready(url, "pair")
    finally:
        await client.close()
    v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
    try:
        rows = [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]
        answer = await v1.infer(url, {"instances": rows}, model_name="mlp")
        out["v1_predictions"] = answer["predictions"]
        out["v1_model_ready"] = await v1.is_model_ready(url, "mlp")
    finally:
        await v1.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2] == "binary"))
"""


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_rest_clients_v2_and_v1(server, binary):
    done = subprocess.run([sys.executable, "-c", _KSERVE, server.url,
                           "binary" if binary else "json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert out["id"] == "k-1"
    assert np.array_equal(out["outputs"]["sum"], a + a)
    assert np.array_equal(out["outputs"]["diff"], a - a)
    assert out["live"] and out["ready"] and out["model_ready"]
    # V1 is TF Serving's :predict and model status.
    assert np.asarray(out["v1_predictions"]).shape == (2, 3)
    assert out["v1_model_ready"] is True


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests(client, algorithm):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    inputs = [triton.InferInput("a", [2, 4], "FP32"), triton.InferInput("b", [2, 4], "FP32")]
    for tensor in inputs:
        tensor.set_data_from_numpy(a, binary_data=True)
    result = client.infer("pair", inputs, request_compression_algorithm=algorithm,
                          response_compression_algorithm=algorithm)
    assert np.array_equal(result.as_numpy("sum"), a + a)
