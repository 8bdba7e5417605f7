"""Deadlines and cancellation on every door (issue 16, deliver 3).

A request whose deadline passes while it waits is answered 504 / ``DEADLINE_EXCEEDED`` and
never runs; a client that goes away has its queued work dropped. The deadline comes from
the ``X-Ferry-Timeout-Ms`` header (REST), the V2 ``timeout`` parameter (microseconds, as
Triton reads it; REST and gRPC), gRPC's own deadline, or the server's default.

The model is a real, deliberately slow ONNX model served with one instance and no batching:
request A occupies the instance for a good fraction of a second, request B queues behind it.
Whether B ran is read from the engine's own count of runtime calls (``ferry_batch_size``).

Doors: ferry's HTTP/1.1 protocol (its inference lane, and the ASGI app for a chunked body),
the ASGI app under stock uvicorn (h11), and gRPC.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import orjson
import pytest

from ferry.engine import Engine
from ferry.engine.config import ModelConfig
from ferry.formats import ImportOptions, import_model
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from ferry.repository import Repository
from grpc_server import serve_grpc
from protocol_models import slow
from rest_server import serve

pytestmark = pytest.mark.timeout(300)

ROWS, WIDTH = 256, 512
CONFIG = ModelConfig.model_validate({
    "instances": 1, "warmup": False, "inline_below_ms": 0.0, "max_queue": 16,
    "runtime": {"intra_op_threads": 1}, "batching": {"enabled": False}})
X = np.ones((ROWS, WIDTH), dtype=np.float32)
HEADER = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [ROWS, WIDTH],
                                   "parameters": {"binary_data_size": X.nbytes}}]})
PAYLOAD = HEADER + X.tobytes()
BINARY = {"inference-header-content-length": str(len(HEADER))}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    root = tmp_path_factory.mktemp("deadlines")
    repo = Repository(root / "repo")
    import_model(repo, slow(root, layers=400), "slow", options=ImportOptions(sample_count=2))
    return repo


def _engine(repo: Repository, **kwargs: object) -> Engine:
    return Engine(repo, defaults=CONFIG, **kwargs)  # type: ignore[arg-type]


def _runs(engine: Engine) -> int:
    """How many runtime calls the slow model has made (one per request: no batching)."""
    text = engine.metrics.render()[0].decode()
    found = re.search(r'ferry_batch_size_count\{model="slow"\} (\d+(?:\.\d+)?)', text)
    return int(float(found.group(1))) if found else 0


def _body_with_timeout(microseconds: object) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps({
        "parameters": {"timeout": microseconds},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [ROWS, WIDTH],
                    "parameters": {"binary_data_size": X.nbytes}}]})
    return header + X.tobytes(), {"inference-header-content-length": str(len(header))}


REST_DOORS = ["lane", "h11"]


@pytest.fixture(params=REST_DOORS)
def rest(request: pytest.FixtureRequest, repo: Repository) -> Iterator[tuple[str, object]]:
    engine = _engine(repo)
    with serve(engine, repo, lane=True if request.param == "lane" else "h11",
               max_body_bytes=8 << 20) as served:
        yield request.param, served


@pytest.mark.parametrize("source", ["header", "parameter"])
async def test_a_request_whose_deadline_passes_in_the_queue_is_answered_504_and_never_runs(
        rest: tuple[str, object], source: str) -> None:
    door, served = rest
    engine: Engine = served.engine  # type: ignore[attr-defined]
    if source == "header":
        body, headers = PAYLOAD, {**BINARY, "X-Ferry-Timeout-Ms": "40"}
    else:
        body, headers = _body_with_timeout(40_000)
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:  # type: ignore[attr-defined]
        before = _runs(engine)
        first = asyncio.create_task(client.post("/v2/models/slow/infer", content=PAYLOAD,
                                                headers=BINARY))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        late = await client.post("/v2/models/slow/infer", content=body, headers=headers)
        waited = time.monotonic() - started
        answer = await first
    assert answer.status_code == 200, answer.text
    assert late.status_code == 504, (door, late.status_code, late.text)
    assert "deadline" in late.json()["error"]
    assert waited < 5.0  # answered when its deadline passed, not after A
    assert _runs(engine) - before == 1, "the expired request ran"


@pytest.mark.parametrize(("header", "value", "named"), [
    ("X-Ferry-Timeout-Ms", "soon", "X-Ferry-Timeout-Ms"),
    ("X-Ferry-Timeout-Ms", "-5", "X-Ferry-Timeout-Ms"),
    ("X-Ferry-Timeout-Ms", "0", "X-Ferry-Timeout-Ms"),
    ("X-Ferry-Timeout-Ms", "99999999999", "X-Ferry-Timeout-Ms"),
    (None, "1.5", "timeout"),
    (None, "true", "timeout"),
    (None, '"100"', "timeout"),
    (None, "-1", "timeout"),
])
def test_a_malformed_timeout_is_a_400_naming_it(rest: tuple[str, object], header: str | None,
                                                value: str, named: str) -> None:
    _, served = rest
    if header is not None:
        body, headers = PAYLOAD, {**BINARY, header: value}
    else:
        body, headers = _body_with_timeout(orjson.loads(value))
    response = httpx.post(f"{served.url}/v2/models/slow/infer", content=body,  # type: ignore[attr-defined]
                          headers=headers, timeout=60)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]


def test_a_generous_deadline_changes_nothing(rest: tuple[str, object]) -> None:
    _, served = rest
    body, headers = _body_with_timeout(60_000_000)
    response = httpx.post(f"{served.url}/v2/models/slow/infer", content=body,  # type: ignore[attr-defined]
                          headers={**headers, "X-Ferry-Timeout-Ms": "60000"}, timeout=60)
    assert response.status_code == 200, response.text


async def test_the_servers_default_timeout_applies_to_requests_without_one(
        repo: Repository) -> None:
    engine = _engine(repo, default_timeout=0.04)
    with serve(engine, repo, max_body_bytes=8 << 20) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
            first = asyncio.create_task(client.post("/v2/models/slow/infer",
                                                    content=PAYLOAD, headers=BINARY))
            await asyncio.sleep(0.05)
            late = await client.post("/v2/models/slow/infer", content=PAYLOAD, headers=BINARY)
            assert late.status_code == 504, late.text
            # The first one had the same default: it started at once, so it was answered.
            assert (await first).status_code == 200


def _raw_request(path: str, body: bytes, headers: dict[str, str], *, chunked: bool) -> bytes:
    fields = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if chunked:
        return (f"POST {path} HTTP/1.1\r\nHost: t\r\n{fields}Transfer-Encoding: chunked\r\n"
                f"\r\n{len(body):x}\r\n").encode("ascii") + body + b"\r\n0\r\n\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\n{fields}Content-Length: {len(body)}\r\n"
            "\r\n").encode("ascii") + body


@pytest.mark.parametrize("route", ["lane", "app"])
async def test_a_client_that_goes_away_has_its_queued_work_dropped(
        repo: Repository, route: str) -> None:
    # ferry's HTTP/1.1 protocol: a plain body is answered by its lane, a chunked one by the
    # ASGI app (in a task). A lost connection (a reset: what a killed client's kernel
    # sends) cancels the waiting request of either; a half-close (FIN) is HTTP/1.1's "no
    # more requests", and what was sent is still answered (test_http_differential).
    engine = _engine(repo)
    with serve(engine, repo, max_body_bytes=8 << 20) as served:
        port = int(served.url.rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
            before = _runs(engine)
            first = asyncio.create_task(client.post("/v2/models/slow/infer",
                                                    content=PAYLOAD, headers=BINARY))
            await asyncio.sleep(0.05)
            gone = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
            for sock in gone:
                sock.sendall(_raw_request("/v2/models/slow/infer", PAYLOAD, BINARY,
                                          chunked=route == "app"))
            await asyncio.sleep(0.05)
            for sock in gone:  # close with a reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            assert (await first).status_code == 200
            await asyncio.sleep(1.0)  # long enough for the three to have run, had they
            after = await client.post("/v2/models/slow/infer", content=PAYLOAD,
                                      headers=BINARY)
            assert after.status_code == 200
        assert _runs(engine) - before == 2, "work of a client that went away ran"


# ---------------------------------------------------------------------------- gRPC


def _grpc_request(timeout_us: int | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=[ROWS, WIDTH])
    request.raw_input_contents.append(X.tobytes())
    if timeout_us is not None:
        request.parameters["timeout"].int64_param = timeout_us
    return request


@pytest.fixture
def grpc_served(repo: Repository) -> Iterator[tuple[object, Engine]]:
    engine = _engine(repo)
    with serve_grpc(engine, max_message_bytes=8 << 20) as served:
        yield served, engine


@pytest.mark.parametrize("source", ["grpc-deadline", "parameter"])
def test_grpc_a_request_whose_deadline_passes_is_dropped_with_deadline_exceeded(
        grpc_served: tuple[object, Engine], source: str) -> None:
    served, engine = grpc_served
    options = [("grpc.max_send_message_length", 8 << 20),
               ("grpc.max_receive_message_length", 8 << 20)]
    with grpc.insecure_channel(served.target, options=options) as channel:  # type: ignore[attr-defined]
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        before = _runs(engine)
        first = stub.ModelInfer.future(_grpc_request(), timeout=60)
        time.sleep(0.05)
        if source == "grpc-deadline":
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(_grpc_request(), timeout=0.04)
        else:
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(_grpc_request(timeout_us=40_000), timeout=60)
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert first.result().model_name == "slow"
        time.sleep(0.5)
    assert _runs(engine) - before == 1, "the expired request ran"


def test_grpc_a_malformed_timeout_parameter_is_invalid_argument(
        grpc_served: tuple[object, Engine]) -> None:
    served, _ = grpc_served
    request = _grpc_request()
    request.parameters["timeout"].string_param = "soon"
    options = [("grpc.max_send_message_length", 8 << 20)]
    with grpc.insecure_channel(served.target, options=options) as channel, \
            pytest.raises(grpc.RpcError) as caught:  # type: ignore[attr-defined]
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "timeout" in caught.value.details()


def test_grpc_a_cancelled_call_has_its_queued_work_dropped(
        grpc_served: tuple[object, Engine]) -> None:
    served, engine = grpc_served
    with grpc.insecure_channel(served.target, options=[  # type: ignore[attr-defined]
            ("grpc.max_send_message_length", 8 << 20),
            ("grpc.max_receive_message_length", 8 << 20)]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        before = _runs(engine)
        first = stub.ModelInfer.future(_grpc_request(), timeout=60)
        time.sleep(0.05)
        queued = [stub.ModelInfer.future(_grpc_request(), timeout=60) for _ in range(3)]
        time.sleep(0.05)
        for call in queued:
            call.cancel()
        assert first.result().model_name == "slow"
        time.sleep(1.0)
        stub.ModelInfer(_grpc_request(), timeout=60)
    assert _runs(engine) - before == 2, "work of a cancelled call ran"
