"""Issue 13: nothing a client sends makes the server remember it without bound.

One engine serves both doors, as ``ferry serve`` does: REST (ferry's HTTP/1.1 protocol, over
a real socket) and gRPC (a real ``grpc.aio`` server on the same event loop). Every test goes
through real sockets with real clients (httpx, grpcio) and measures the bound: the number of
metric series, the repository index, the status code and the length of a message.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import numpy as np
import orjson
import pytest

from ferry.engine import Engine
from ferry.errors import NAME_MAX
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from ferry.protocols.grpc.server import bind, build_server
from ferry.signature import MAX_DIM
from rest_server import Served, build_repository, serve

#: How many made-up names each door sends in the tests of the metrics and the index.
CALLS = 1000
HUGE = [0, 2**62]
LONG = "n" * 100_000
ROW = [0.5, -1.0, 2.0, 0.25]

pytestmark = pytest.mark.timeout(300)


@dataclass
class Doors:
    """The two doors of one engine: the REST server (with its loop) and the gRPC target."""

    rest: Served
    target: str


async def _start_grpc(engine: Engine) -> tuple[grpc.aio.Server, int]:
    server = build_server(engine)
    port = bind(server, "127.0.0.1", 0)
    await server.start()
    return server, port


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    repo = build_repository(tmp_path_factory.mktemp("bounds"))
    with serve(Engine(repo), repo) as rest:
        server, port = rest.call(_start_grpc(rest.engine))
        try:
            yield Doors(rest, f"127.0.0.1:{port}")
        finally:
            rest.call(server.stop(grace=1))


@pytest.fixture
def http(doors: Doors) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=doors.rest.url, timeout=30) as client:
        yield client


@pytest.fixture
def stub(doors: Doors) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    # The default client limits on purpose: a long message overflowed its 8 KiB of metadata.
    with grpc.insecure_channel(doors.target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _scrape(http: httpx.Client) -> tuple[str, float]:
    began = time.perf_counter()
    response = http.get("/metrics")
    seconds = time.perf_counter() - began
    assert response.status_code == 200
    return response.text, seconds


def _infer(model: str, version: str = "", *, name: str = "x",
           outputs: list[pb.ModelInferRequest.InferRequestedOutputTensor] | None = None
           ) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model, model_version=version)
    message.outputs.extend(outputs or ())
    message.inputs.add(name=name, datatype="FP32", shape=[1, 4])
    message.raw_input_contents.append(np.array([ROW], np.float32).tobytes())
    return message


def _grpc_error(call, message) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(message, timeout=30)
    return caught.value


def _rest_names(i: int) -> list[str]:
    return [f"/v2/models/nope-{i}/infer", f"/v2/models/mlp/versions/{i + 100}/infer",
            f"/predict/nope-{i}", f"/v1/models/nope-{i}:predict"]


# --------------------------------------------------------------------- 1. metric series


def test_unknown_models_and_versions_add_no_metric_series(doors, http, stub):
    """2 x 1,000 REST and 2 x 1,000 gRPC requests to made-up names: no new series."""
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": ROW}]}
    # One of each first, so that the shared series of the unknown exist before counting.
    for path in _rest_names(-1):
        http.post(path, json=body)
    for message in (_infer("nope"), _infer("mlp", "999")):
        _grpc_error(stub.ModelInfer, message)
    before, _ = _scrape(http)
    for i in range(CALLS):
        for path in _rest_names(i)[i % 2::2]:  # two of the four routes per round
            assert http.post(path, json=body).status_code == 404
        for message in (_infer(f"nope-{i}"), _infer("mlp", str(i + 100))):
            assert _grpc_error(stub.ModelInfer, message).code() == grpc.StatusCode.NOT_FOUND
    after, _ = _scrape(http)
    assert len(_series(after)) == len(_series(before))
    assert "nope-" not in after and 'version="100"' not in after
    assert 'model="",protocol="grpc",status="NOT_FOUND",version=""' in _sorted(after)
    assert 'model="",protocol="rest",status="404",version=""' in _sorted(after)
    assert 'model="mlp",protocol="grpc",status="NOT_FOUND",version=""' in _sorted(after)
    assert len(after) < 128 << 10
    seconds = statistics.median(_scrape(http)[1] for _ in range(5))
    assert seconds < 0.25, f"a scrape took {seconds * 1000:.1f} ms"


def _sorted(text: str) -> str:
    """The exposition with each sample's labels in name order (as prometheus sorts them)."""
    lines = []
    for line in _series(text):
        if "{" not in line:
            continue
        name, rest = line.split("{", 1)
        labels, value = rest.rsplit("}", 1)
        lines.append(name + "{" + ",".join(sorted(labels.split(","))) + "}" + value)
    return "\n".join(lines)


# ----------------------------------------------------------------- 2. repository state


def test_loading_names_the_repository_lacks_leaves_the_index_unchanged(doors, http, stub):
    """1,000 REST and 1,000 gRPC loads (and a few unloads) of missing or invalid names."""
    before = http.post("/v2/repository/index").json()
    rest_bad = ["..", ".hidden", "a..b", "bad name", "x" * 300]
    grpc_bad = ["../../etc", "/etc/passwd", "..", LONG]
    for i in range(CALLS):
        name = rest_bad[i % len(rest_bad)] if i % 4 == 0 else f"missing-{i}"
        response = http.post(f"/v2/repository/models/{name}/load")
        assert response.status_code in (400, 404), response.text
        assert len(response.content) < 2000
        name = grpc_bad[i % len(grpc_bad)] if i % 4 == 0 else f"missing-{i}"
        error = _grpc_error(stub.RepositoryModelLoad,
                            pb.RepositoryModelLoadRequest(model_name=name))
        assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    for name in ("missing-1", "../../etc"):
        error = _grpc_error(stub.RepositoryModelUnload,
                            pb.RepositoryModelUnloadRequest(model_name=name))
        assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        assert http.post("/v2/repository/models/missing-2/unload").status_code == 404
    assert http.post("/v2/repository/index").json() == before
    index = stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=30)
    assert sorted({m.name for m in index.models}) == ["alltypes", "half", "mlp", "pair"]


def test_a_real_model_still_loads(http, stub):
    assert http.post("/v2/repository/models/mlp/load").status_code == 200
    stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="mlp"), timeout=60)
    rows = http.post("/v2/repository/index").json()
    assert {"name": "mlp", "version": "1", "state": "READY", "reason": ""} in rows


# ---------------------------------------------------------------------- 5. shapes


def _rest_huge_json(http: httpx.Client) -> httpx.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": HUGE, "data": []}]}
    return http.post("/v2/models/mlp/infer", json=body)


def _rest_huge_binary(http: httpx.Client) -> httpx.Response:
    head = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": HUGE,
                                     "parameters": {"binary_data_size": 0}}]})
    return http.post("/v2/models/mlp/infer", content=head, headers={
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head))})


@pytest.mark.parametrize("send", [_rest_huge_json, _rest_huge_binary], ids=["json", "binary"])
def test_rest_refuses_a_zero_element_tensor_with_a_huge_dimension(http, caplog, send):
    with caplog.at_level(logging.INFO):
        response = send(http)
    assert response.status_code == 400, response.text
    assert f"is above the maximum of {MAX_DIM}" in response.json()["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("raw", [True, False], ids=["raw-contents", "typed-contents"])
def test_grpc_refuses_a_zero_element_tensor_with_a_huge_dimension(stub, caplog, raw):
    message = pb.ModelInferRequest(model_name="mlp")
    message.inputs.add(name="x", datatype="FP32", shape=HUGE)
    if raw:
        message.raw_input_contents.append(b"")
    with caplog.at_level(logging.INFO):
        error = _grpc_error(stub.ModelInfer, message)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert f"is above the maximum of {MAX_DIM}" in error.details()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ------------------------------------------------------------------ 6. long names


def test_rest_cuts_long_names_in_messages(http):
    # A model name travels in the path, which the HTTP limits cut at 8 KiB (414): the
    # longest one that passes, then names in the body, which only the body limit bounds.
    good = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": ROW}]}
    model = http.post(f"/v2/models/{'m' * 8000}/infer", json=good)
    body = {"inputs": [{"name": LONG, "datatype": "FP32", "shape": [1, 4], "data": ROW}]}
    unknown_input = http.post("/v2/models/mlp/infer", json=body)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": ROW}],
            "outputs": [{"name": LONG}]}
    unknown_output = http.post("/v2/models/mlp/infer", json=body)
    for response, status in ((model, 404), (unknown_input, 400), (unknown_output, 404)):
        assert response.status_code == status, response.text[:300]
        message = response.json()["error"]
        assert "more characters)" in message and len(message) < 4 * NAME_MAX + 200


@pytest.mark.parametrize("case", ["model", "version", "input", "output", "metadata", "load"])
def test_grpc_answers_long_names_with_not_found_not_resource_exhausted(stub, case):
    output = pb.ModelInferRequest.InferRequestedOutputTensor(name=LONG)
    call, message, code = {
        "model": (stub.ModelInfer, _infer(LONG), grpc.StatusCode.NOT_FOUND),
        "version": (stub.ModelInfer, _infer("mlp", LONG), grpc.StatusCode.NOT_FOUND),
        "input": (stub.ModelInfer, _infer("mlp", name=LONG), grpc.StatusCode.INVALID_ARGUMENT),
        "output": (stub.ModelInfer, _infer("mlp", outputs=[output]), grpc.StatusCode.NOT_FOUND),
        "metadata": (stub.ModelMetadata, pb.ModelMetadataRequest(name=LONG),
                     grpc.StatusCode.NOT_FOUND),
        "load": (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name=LONG),
                 grpc.StatusCode.INVALID_ARGUMENT),
    }[case]
    error = _grpc_error(call, message)
    assert error.code() == code, error.details()[:300]
    assert "more characters)" in error.details() and len(error.details()) < 4 * NAME_MAX + 200


# ---------------------------------------------------------------- 7. classification


def test_rest_refuses_the_classification_parameter(http):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": ROW}],
            "outputs": [{"name": "scores", "parameters": {"classification": 2}}]}
    response = http.post("/v2/models/mlp/infer", json=body)
    assert response.status_code == 400
    assert "'classification' parameter is not supported" in response.json()["error"]


def test_grpc_refuses_the_classification_parameter(stub):
    output = pb.ModelInferRequest.InferRequestedOutputTensor(name="scores")
    output.parameters["classification"].int64_param = 2
    error = _grpc_error(stub.ModelInfer, _infer("mlp", outputs=[output]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'classification' parameter is not supported" in error.details()
