"""The gRPC front end on a real server with the real engine, queried by real clients."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.utils import InferenceServerException

from ferry.client import GrpcClient
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from ferry.runtimes import load_runtime

ROWS = np.array([[0.5, -1.0, 2.0, 0.25], [1.0, 2.0, 3.0, 4.0]], np.float32)


def _reference(repo, name, inputs):
    stored = repo.open(name)
    with load_runtime("onnxruntime", stored.artifact_path, stored.manifest.signature) as rt:
        return rt.predict(inputs)


@pytest.fixture
def stub(served):
    with grpc.insecure_channel(served.target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
def client(served):
    c = triton.InferenceServerClient(served.target)
    yield c
    c.close()


def test_health_metadata_and_readiness_with_tritonclient(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("mlp", "1")
    assert not client.is_model_ready("mlp", "9")
    meta = client.get_server_metadata()
    assert meta.name == "ferry" and "binary_tensor_data" in meta.extensions
    model = client.get_model_metadata("pair")
    assert [i.name for i in model.inputs] == ["a", "b"]
    assert list(model.inputs[0].shape) == [-1, 4] and model.inputs[0].datatype == "FP32"


@pytest.mark.parametrize("raw", [True, False], ids=["raw-contents", "typed-contents"])
def test_tritonclient_infer_matches_onnx_runtime(served, grpc_repo, stub, client, raw):
    b = np.ones_like(ROWS)
    expected = _reference(grpc_repo, "pair", {"a": ROWS, "b": b})
    if raw:  # tritonclient sends raw_input_contents
        inputs = [triton.InferInput("a", [2, 4], "FP32"), triton.InferInput("b", [2, 4], "FP32")]
        inputs[0].set_data_from_numpy(ROWS)
        inputs[1].set_data_from_numpy(b)
        result = client.infer("pair", inputs, request_id="req-7",
                              outputs=[triton.InferRequestedOutput("diff")])
        assert result.get_response().id == "req-7"
        assert result.as_numpy("sum") is None
        np.testing.assert_allclose(result.as_numpy("diff"), expected["diff"])
    else:  # typed contents, with plain stubs
        request = pb.ModelInferRequest(model_name="pair", id="typed")
        for name, array in (("a", ROWS), ("b", b)):
            tensor = request.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
            tensor.contents.fp32_contents.extend(array.ravel().tolist())
        response = stub.ModelInfer(request)
        assert response.id == "typed" and response.model_version == "1"
        outputs = {o.name: np.array(o.contents.fp32_contents, np.float32).reshape(o.shape)
                   for o in response.outputs}
        np.testing.assert_allclose(outputs["sum"], expected["sum"])
        np.testing.assert_allclose(outputs["diff"], expected["diff"])


def test_every_datatype_round_trips_raw(served, client):
    inputs, arrays = [], {}
    rng = np.random.default_rng(0)
    for datatype, dtype in [("BOOL", np.bool_), ("UINT8", np.uint8), ("UINT16", np.uint16),
                            ("UINT32", np.uint32), ("UINT64", np.uint64), ("INT8", np.int8),
                            ("INT16", np.int16), ("INT32", np.int32), ("INT64", np.int64),
                            ("FP32", np.float32), ("FP64", np.float64)]:
        array = (rng.integers(0, 100, (2, 3)) > 50 if dtype is np.bool_
                 else rng.integers(0, 100, (2, 3)).astype(dtype))
        arrays[datatype] = array
        item = triton.InferInput(f"in_{datatype.lower()}", [2, 3], datatype)
        item.set_data_from_numpy(array)
        inputs.append(item)
    words = np.array([[b"a", b"bb", b""], ["é€".encode(), b"z", b"y\x00y"]], dtype=object)
    item = triton.InferInput("in_bytes", [2, 3], "BYTES")
    item.set_data_from_numpy(words)
    inputs.append(item)
    result = client.infer("alltypes", inputs)
    for datatype, array in arrays.items():
        np.testing.assert_array_equal(result.as_numpy(f"out_{datatype.lower()}"), array)
    assert result.as_numpy("out_bytes").tolist() == words.tolist()


def test_fp16_travels_raw(client):
    x = np.array([[1.5, -2.0]], np.float16)
    item = triton.InferInput("x", [1, 2], "FP16")
    item.set_data_from_numpy(x)
    result = client.infer("half", [item])
    np.testing.assert_array_equal(result.as_numpy("y"), x + np.float16(1))


def test_ferry_grpc_client_predict(served, grpc_repo):
    with GrpcClient(served.target) as c:
        scores = c.predict("mlp", ROWS.tolist())
    np.testing.assert_allclose(scores, _reference(grpc_repo, "mlp", {"x": ROWS})["scores"],
                               rtol=1e-6)


def test_kserve_grpc_client_in_its_own_process(served, grpc_repo):
    # kserve registers inference.* in protobuf's default pool, as tritonclient does: the two
    # cannot share a process, so KServe's client runs in a fresh interpreter.
    script = textwrap.dedent(f"""
        import asyncio, json
        import numpy as np
        from kserve import InferenceGRPCClient, InferInput, InferRequest

        async def main():
            client = InferenceGRPCClient({served.target!r})
            x = np.array({ROWS.tolist()!r}, dtype=np.float32)
            item = InferInput("x", list(x.shape), "FP32")
            item.set_data_from_numpy(x, binary_data=True)
            response = await client.infer(InferRequest(model_name="mlp", infer_inputs=[item],
                                                       request_id="k-1"))
            ready = await client.is_model_ready("mlp")
            await client.close()
            print(json.dumps({{"id": response.id, "ready": ready,
                               "scores": response.outputs[0].as_numpy().tolist()}}))
        asyncio.run(main())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["id"] == "k-1" and answer["ready"] is True
    np.testing.assert_allclose(answer["scores"],
                               _reference(grpc_repo, "mlp", {"x": ROWS})["scores"], rtol=1e-6)


def test_health_service_and_reflection(served):
    with grpc.insecure_channel(served.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        services = {s.name for answer in listing for s in answer.list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services


def test_repository_index_unload_and_load(served, stub):
    index = stub.RepositoryIndex(pb.RepositoryIndexRequest())
    assert {m.name for m in index.models} == {"alltypes", "half", "mlp", "pair"}
    stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="half"))
    try:
        assert not stub.ModelReady(pb.ModelReadyRequest(name="half")).ready
        ready = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True))
        assert "half" not in {m.name for m in ready.models}
    finally:
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="half"))
    assert stub.ModelReady(pb.ModelReadyRequest(name="half")).ready


def _raw_request(model="pair", **overrides):
    request = pb.ModelInferRequest(model_name=model)
    for name in ("a", "b"):
        request.inputs.add(name=name, datatype="FP32", shape=[2, 4])
        request.raw_input_contents.append(ROWS.tobytes())
    for key, value in overrides.items():
        setattr(request, key, value)
    return request


def _bad(field_edit):
    request = _raw_request()
    field_edit(request)
    return request


BAD = [
    ("short-raw", lambda r: r.raw_input_contents.__setitem__(0, b"\x00" * 5),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'a'"),
    ("wrong-datatype", lambda r: setattr(r.inputs[0], "datatype", "INT32"),
     grpc.StatusCode.INVALID_ARGUMENT, "expected FP32"),
    ("unknown-datatype", lambda r: setattr(r.inputs[0], "datatype", "FLOAT"),
     grpc.StatusCode.INVALID_ARGUMENT, "FLOAT"),
    ("unknown-input", lambda r: setattr(r.inputs[1], "name", "c"),
     grpc.StatusCode.INVALID_ARGUMENT, "'c'"),
    ("missing-input", lambda r: (r.inputs.pop(), r.raw_input_contents.pop()),
     grpc.StatusCode.INVALID_ARGUMENT, "missing input 'b'"),
    ("negative-shape", lambda r: r.inputs[0].shape.__setitem__(0, -2),
     grpc.StatusCode.INVALID_ARGUMENT, "-2"),
    ("absurd-shape", lambda r: r.inputs[0].shape.__setitem__(0, 1 << 40),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'a'"),
    ("wrong-shape", lambda r: (r.inputs[0].shape.__setitem__(1, 2),
                               r.inputs[0].shape.append(2)),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'a'"),
    ("unknown-model", lambda r: setattr(r, "model_name", "nope"),
     grpc.StatusCode.NOT_FOUND, "'nope'"),
    ("unknown-version", lambda r: setattr(r, "model_version", "42"),
     grpc.StatusCode.NOT_FOUND, "42"),
    ("unknown-output", lambda r: r.outputs.add(name="product"),
     grpc.StatusCode.NOT_FOUND, "unknown output 'product'"),
]


@pytest.mark.parametrize(("edit", "code", "phrase"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_requests_get_a_clear_status(stub, edit, code, phrase):
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_bad(edit), timeout=30)
    assert info.value.code() == code, info.value.details()
    assert phrase in info.value.details()


def test_bytes_where_numbers_are_expected(stub):
    request = pb.ModelInferRequest(model_name="pair")
    for name in ("a", "b"):
        tensor = request.inputs.add(name=name, datatype="BYTES", shape=[1, 4])
        tensor.contents.bytes_contents.extend([b"x"] * 4)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected FP32" in info.value.details()


def test_garbage_bytes_and_huge_messages(served):
    with grpc.insecure_channel(served.target) as channel:
        raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff not a protobuf", timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        huge = _raw_request()
        huge.raw_input_contents[0] = b"\x00" * (2 << 20)  # above the 1 MiB test limit
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(huge, timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The server is still fine afterwards.
        assert stub.ModelInfer(_raw_request(), timeout=30).model_name == "pair"


def test_bytes_that_are_not_text_are_refused_not_altered(client):
    inputs = []
    for datatype, dtype in [("BOOL", np.bool_), ("UINT8", np.uint8), ("UINT16", np.uint16),
                            ("UINT32", np.uint32), ("UINT64", np.uint64), ("INT8", np.int8),
                            ("INT16", np.int16), ("INT32", np.int32), ("INT64", np.int64),
                            ("FP32", np.float32), ("FP64", np.float64)]:
        item = triton.InferInput(f"in_{datatype.lower()}", [1, 3], datatype)
        item.set_data_from_numpy(np.zeros((1, 3), dtype))
        inputs.append(item)
    item = triton.InferInput("in_bytes", [1, 3], "BYTES")
    item.set_data_from_numpy(np.array([[b"ok", b"\xff\xfe", b""]], dtype=object))
    inputs.append(item)
    with pytest.raises(InferenceServerException, match="element 1 is not UTF-8"):
        client.infer("alltypes", inputs)


def test_tritonclient_reports_errors_as_exceptions(client):
    item = triton.InferInput("x", [1, 3], "FP32")
    item.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException, match="expected FP32 with shape"):
        client.infer("mlp", [item])


def test_empty_request_names_the_missing_model(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(pb.ModelInferRequest(), timeout=30)
    assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert "model" in info.value.details()


def test_a_full_queue_is_resource_exhausted_with_retry_after(tmp_path):
    import asyncio

    from ferry.engine import Engine, ModelConfig
    from ferry.formats import ImportOptions, import_model
    from ferry.repository import Repository
    from grpc_server import serve_grpc
    from protocol_models import slow

    # A deliberately slow model (a few ms a call): 40 calls at once overflow a queue of one
    # however the machine's load spreads their arrival.
    repo = Repository(tmp_path / "repo")
    import_model(repo, slow(tmp_path, layers=100), "slow", options=ImportOptions(sample_count=2))
    tight = ModelConfig.model_validate({"max_queue": 1, "max_waiting": 0, "inline_below_ms": 0.0,
                                        "batching": {"enabled": False}})
    x = np.ones((64, 512), np.float32)
    request = pb.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    with serve_grpc(Engine(repo, defaults=tight)) as server:
        async def burst() -> list[object]:
            async with grpc.aio.insecure_channel(server.target) as channel:
                aio_stub = pb_grpc.GRPCInferenceServiceStub(channel)
                calls = [aio_stub.ModelInfer(request, timeout=60) for _ in range(40)]
                return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(burst())
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    answered = [r for r in results if isinstance(r, pb.ModelInferResponse)]
    assert refused and answered and len(refused) + len(answered) == 40
    assert {r.code() for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert "overloaded" in refused[0].details()
    trailing = dict(refused[0].trailing_metadata() or ())
    assert float(trailing["retry-after"]) > 0
