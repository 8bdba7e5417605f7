"""Issue 16 item 1: limits before work hold the same on every door.

The doors are those of ``test_one_door.py``, over real sockets with real clients:
ferry's HTTP/1.1 protocol (its inference lane, and the ASGI app behind it), the same ASGI
app under stock uvicorn with h11, and gRPC (a real ``grpc.aio`` server on the first
engine). Each engine runs the real :class:`~ferry.limits.RateLimit` policy and a
``max_request_elements`` bound; a test authentication policy names the principal after the
bearer token, so that each test spends its own caller's bucket.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import numpy as np
import orjson
import pytest

from ferry.call import CallContext
from ferry.engine import Engine
from ferry.limits import Rate, RateLimit
from ferry.policy import Action, Stage
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from ferry.protocols.grpc.server import GrpcLimits, bind, build_server
from ferry.protocols.rest.limits import HttpLimits
from rest_server import Served, build_repository, serve

pytestmark = pytest.mark.timeout(300)

#: Elements one request may carry on these servers: 10 rows of mlp's 4 features.
MAX_ELEMENTS = 40
#: Each caller may make BURST inference calls, then one every 100 s: a refusal is certain.
BURST = 2
JSON = {"content-type": "application/json"}


class NameFromToken:
    """Authenticates ``Bearer <name>`` as ``test:<name>`` (anonymous without one)."""

    stage = Stage.AUTHENTICATE

    def check(self, call: CallContext, action: Action) -> None:
        if call.credentials and call.credentials.startswith("Bearer "):
            call.principal = "test:" + call.credentials[7:]


def _policies() -> list[object]:
    return [NameFromToken(), RateLimit(Rate(0.01, BURST),
                                       overrides={"test:free": Rate(1e6, 1_000_000)})]


@dataclass
class Doors:
    ferry: Served
    h11: Served
    grpc_target: str


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    repo = build_repository(tmp_path_factory.mktemp("limits"))

    def engine() -> Engine:
        return Engine(repo, policies=_policies(), max_request_elements=MAX_ELEMENTS)

    with serve(engine(), repo) as ours, serve(engine(), repo, lane="h11") as h11:
        async def start() -> tuple[grpc.aio.Server, int]:
            server = build_server(ours.engine)
            port = bind(server, "127.0.0.1", 0)
            await server.start()
            return server, port

        server, port = ours.call(start())
        try:
            yield Doors(ours, h11, f"127.0.0.1:{port}")
        finally:
            ours.call(server.stop(grace=1))


def _rows(n: int) -> list[list[float]]:
    return [[0.5, -1.0, 2.0, 0.25]] * n


def _v2(n: int) -> bytes:
    return orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [n, 4],
                                     "data": _rows(n)}]})


#: (door, server, method, path, body of n rows): every REST way to run inference.
REST_DOORS = {
    "http11 lane, V2": ("ferry", "/v2/models/mlp/infer", _v2),
    "asgi under ferry, TF Serving": ("ferry", "/v1/models/mlp:predict",
                                     lambda n: orjson.dumps({"instances": _rows(n)})),
    "asgi under ferry, chunked V2": ("ferry", "/v2/models/mlp/infer", None),
    "uvicorn h11, V2": ("h11", "/v2/models/mlp/infer", _v2),
    "uvicorn h11, /predict": ("h11", "/predict/mlp", lambda n: orjson.dumps({"data": _rows(n)})),
}


def _post(doors: Doors, door: str, rows: int, auth: str) -> httpx.Response:
    which, path, body = REST_DOORS[door]
    served = doors.ferry if which == "ferry" else doors.h11
    headers = {**JSON, "authorization": f"Bearer {auth}"}
    with httpx.Client(base_url=served.url, timeout=30) as client:
        if body is None:  # chunked: the app's route reads it, not the lane
            data = _v2(rows)
            return client.post(path, content=iter([data[:9], data[9:]]), headers=headers)
        return client.post(path, content=body(rows), headers=headers)


def _infer_message(rows: int, model: str = "mlp") -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name="x", datatype="FP32", shape=[rows, 4])
    message.raw_input_contents.append(np.array(_rows(rows), np.float32).tobytes())
    return message


def _grpc_infer(doors: Doors, message: pb.ModelInferRequest, auth: str | None
                ) -> pb.ModelInferResponse:
    metadata = [("authorization", f"Bearer {auth}")] if auth else []
    with grpc.insecure_channel(doors.grpc_target) as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            message, metadata=metadata, timeout=30)


# ----------------------------------------------------------------- rate limit


@pytest.mark.parametrize("door", list(REST_DOORS))
def test_a_caller_past_its_rate_gets_429_with_retry_after_on_every_rest_door(doors, door):
    caller = f"rest-{door}"
    for _ in range(BURST):
        response = _post(doors, door, 1, caller)
        assert response.status_code == 200, response.text
    refused = _post(doors, door, 1, caller)
    assert refused.status_code == 429, refused.text
    assert 99 <= int(refused.headers["retry-after"]) <= 100  # a token every 100 s
    assert "rate limit reached for 'test:" in refused.json()["error"]
    assert "0.01 calls/s, 2 at once" in refused.json()["error"]
    # Another caller, and health checks, are not affected.
    assert _post(doors, door, 1, f"other-{door}").status_code == 200
    served = doors.ferry if REST_DOORS[door][0] == "ferry" else doors.h11
    with httpx.Client(base_url=served.url, timeout=30) as client:
        assert client.get("/v2/health/ready",
                          headers={"authorization": f"Bearer {caller}"}).status_code == 200


def test_a_caller_past_its_rate_gets_resource_exhausted_with_retry_metadata_on_grpc(doors):
    for _ in range(BURST):
        _grpc_infer(doors, _infer_message(1), "grpc-caller")
    with pytest.raises(grpc.RpcError) as caught:
        _grpc_infer(doors, _infer_message(1), "grpc-caller")
    error = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "rate limit reached for 'test:grpc-caller'" in (error.details() or "")
    trailing = dict(error.trailing_metadata() or ())
    assert 99 <= int(trailing["retry-after"]) <= 100
    assert 99_000 <= int(trailing["grpc-retry-pushback-ms"]) <= 100_000
    _grpc_infer(doors, _infer_message(1), "grpc-other")


def test_one_caller_has_one_bucket_across_doors(doors):
    # The bucket is the principal's, not the connection's or the door's.
    assert _post(doors, "http11 lane, V2", 1, "everywhere").status_code == 200
    _grpc_infer(doors, _infer_message(1), "everywhere")
    assert _post(doors, "asgi under ferry, TF Serving", 1, "everywhere").status_code == 429
    with pytest.raises(grpc.RpcError) as caught:
        _grpc_infer(doors, _infer_message(1), "everywhere")
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_anonymous_callers_share_their_hosts_bucket(doors):
    # No credentials: the caller is ip:127.0.0.1, whatever port each connection comes from.
    answers = []
    for _ in range(BURST + 1):
        with httpx.Client(base_url=doors.h11.url, timeout=30) as client:
            answers.append(client.post("/v2/models/mlp/infer", content=_v2(1),
                                       headers=JSON).status_code)
    assert answers == [200] * BURST + [429]


# ----------------------------------------------------------------- elements per request


@pytest.mark.parametrize("door", list(REST_DOORS))
def test_a_request_over_the_element_limit_is_413_naming_it_on_every_rest_door(doors, door):
    assert _post(doors, door, MAX_ELEMENTS // 4, "free").status_code == 200
    refused = _post(doors, door, MAX_ELEMENTS // 4 + 1, "free")
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"].startswith(
        f"the request's inputs hold 44 elements, more than this server's limit of "
        f"{MAX_ELEMENTS} (max_request_elements)")


def test_a_request_over_the_element_limit_is_invalid_argument_on_grpc(doors):
    _grpc_infer(doors, _infer_message(MAX_ELEMENTS // 4), "free")
    with pytest.raises(grpc.RpcError) as caught:
        _grpc_infer(doors, _infer_message(MAX_ELEMENTS // 4 + 1), "free")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "44 elements, more than this server's limit of 40 (max_request_elements)" in (
        caught.value.details() or "")


@pytest.mark.parametrize("which", ["ferry", "h11"])
def test_the_element_limit_counts_every_input_together(doors, which):
    # pair has two inputs of [n, 4]: 6 rows each are 24 + 24 = 48 elements in all.
    def body(rows: int) -> bytes:
        return orjson.dumps({"inputs": [
            {"name": name, "datatype": "FP32", "shape": [rows, 4], "data": _rows(rows)}
            for name in ("a", "b")]})

    served = doors.ferry if which == "ferry" else doors.h11
    with httpx.Client(base_url=served.url, timeout=30,
                      headers={**JSON, "authorization": "Bearer free"}) as client:
        assert client.post("/v2/models/pair/infer", content=body(5)).status_code == 200
        refused = client.post("/v2/models/pair/infer", content=body(6))
    assert refused.status_code == 413
    assert "48 elements" in refused.json()["error"]


# ----------------------------------------------------------------- JSON nesting


def _nested(depth: int) -> object:
    data: object = 1.0
    for _ in range(depth):
        data = [data]
    return data


@pytest.mark.parametrize("door", ["http11 lane, V2", "uvicorn h11, V2"])
def test_data_nested_deeper_than_any_tensor_is_400_naming_the_depth(doors, door):
    served = doors.ferry if REST_DOORS[door][0] == "ferry" else doors.h11
    with httpx.Client(base_url=served.url, timeout=30,
                      headers={**JSON, "authorization": "Bearer free"}) as client:
        v2 = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1],
                                       "data": _nested(65)}]})
        rows = b'{"data": ' + b"[" * 900 + b"1.0" + b"]" * 900 + b"}"  # within orjson's 1024
        for path, body in (("/v2/models/mlp/infer", v2), ("/predict/mlp", rows)):
            response = client.post(path, content=body)
            assert response.status_code == 400, response.text
            assert "lists deep; a tensor has at most 64 dimensions" in response.json()["error"]
        # Past orjson's own bound (1024 levels) the body is not read as JSON at all.
        deep = b"[" * 1100 + b"]" * 1100
        response = client.post("/predict/mlp", content=b'{"data": ' + deep + b"}")
        assert response.status_code == 400
        assert "malformed JSON in the request body: depth limit exceeded" in (
            response.json()["error"])


# ----------------------------------------------------------------- header fields


@pytest.mark.parametrize("which", ["ferry", "h11"])
@pytest.mark.parametrize("path", ["/v2/models/mlp/infer", "/v2/health/ready"])
def test_too_many_header_fields_are_431_on_every_rest_door(doors, which, path):
    served = doors.ferry if which == "ferry" else doors.h11
    many = {f"x-field-{i}": "1" for i in range(HttpLimits().max_headers + 1)}
    with httpx.Client(base_url=served.url, timeout=30) as client:
        response = client.post(path, content=_v2(1), headers={**JSON, **many})
        assert response.status_code == 431, response.text
        assert "limit of" in response.json()["error"]
        fine = {f"x-field-{i}": "1" for i in range(HttpLimits().max_headers - 10)}
        assert client.post("/v2/models/mlp/infer", content=_v2(1),
                           headers={**JSON, **fine, "authorization": "Bearer free"}
                           ).status_code == 200


@pytest.mark.parametrize("which", ["ferry", "h11"])
def test_a_head_past_the_size_limit_is_refused_on_every_rest_door(doors, which):
    served = doors.ferry if which == "ferry" else doors.h11
    big = {f"x-big-{i}": "v" * 1000 for i in range(17)}  # 17 KiB of fields: > 16 KiB
    with httpx.Client(base_url=served.url, timeout=30) as client:
        response = client.get("/v2/health/ready", headers=big)
    # ferry (and the app under h11) answer 431; h11 itself refuses a head past 16 KiB with
    # 400 before the app sees it. Either way it is refused, never served.
    assert response.status_code in ((431,) if which == "ferry" else (400, 431))


def test_grpc_metadata_past_grpcs_bound_is_resource_exhausted(doors):
    # gRPC's head is grpc's to bound (8 KiB soft, 16 KiB hard): refused before ferry runs.
    with grpc.insecure_channel(doors.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(_infer_message(1), timeout=30,
                            metadata=[("authorization", "Bearer free"),
                                      ("x-big", "v" * 20_000)])
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        stub.ModelInfer(_infer_message(1), timeout=30,
                        metadata=[("authorization", "Bearer free"), ("x-fine", "v" * 1000)])


# ----------------------------------------------------------------- connections


def test_connections_past_the_cap_are_closed_at_once_and_room_frees_up(tmp_path):
    repo = build_repository(tmp_path)
    cap = 8
    with serve(Engine(repo), repo, limits=HttpLimits(max_connections=cap)) as served:
        port = int(served.url.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap)]
        try:
            time.sleep(0.3)  # every one accepted
            extra = socket.create_connection(("127.0.0.1", port))
            extra.settimeout(5)
            try:
                extra.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                closed = extra.recv(100)
            except (ConnectionResetError, BrokenPipeError):
                closed = b""
            assert closed == b"", "a connection past the cap was answered"
            extra.close()
            held.pop().close()
            time.sleep(0.3)
            with httpx.Client(base_url=served.url, timeout=10) as client:
                assert client.get("/v2/health/live").status_code == 200
        finally:
            for sock in held:
                sock.close()


def test_a_grpc_connection_that_never_completes_its_handshake_is_closed(tmp_path):
    from grpc_server import build_repository as grpc_repository

    repo = grpc_repository(tmp_path)
    engine = Engine(repo)
    with serve(engine, repo) as served:
        async def start() -> tuple[grpc.aio.Server, int]:
            server = build_server(engine, limits=GrpcLimits(handshake_timeout=1.0))
            port = bind(server, "127.0.0.1", 0)
            await server.start()
            return server, port

        server, port = served.call(start())
        try:
            silent = socket.create_connection(("127.0.0.1", port))
            half = socket.create_connection(("127.0.0.1", port))
            half.sendall(b"PRI * HTTP/2.0\r\n")  # half of the HTTP/2 preface
            began = time.monotonic()
            for sock in (silent, half):
                sock.settimeout(30)
                try:
                    while sock.recv(1024):
                        pass
                except ConnectionResetError:
                    pass
            # Closed by the server after the 1 s handshake timeout (grpc's default: 120 s).
            assert time.monotonic() - began < 15
            silent.close()
            half.close()
        finally:
            served.call(server.stop(grace=1))


# ----------------------------------------------------------------- ferry serve


def test_ferry_serve_takes_the_limits_from_its_settings(tmp_path):
    from serving import ferry_serve

    repo = build_repository(tmp_path)
    config = tmp_path / "ferry.toml"
    config.write_text('max_request_elements = 40\n[rate_limit]\nrate = 0.01\nburst = 3\n')
    env = {"FERRY_HTTP_MAX_CONNECTIONS": "16", "FERRY_HTTP_KEEP_ALIVE": "1.0"}
    with ferry_serve(repo.root, "--config", str(config), env=env) as server:
        with httpx.Client(base_url=server.url, timeout=30, headers=JSON) as client:
            # Health is never counted: ferry_serve polled readiness many times already.
            assert client.post("/v2/models/mlp/infer", content=_v2(11)).status_code == 413
            assert client.post("/v2/models/mlp/infer", content=_v2(1)).status_code == 200
        with grpc.insecure_channel(server.grpc) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            stub.ModelInfer(_infer_message(1), timeout=30)  # the third token
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(_infer_message(1), timeout=30)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with httpx.Client(base_url=server.url, timeout=30, headers=JSON) as client:
            refused = client.post("/v2/models/mlp/infer", content=_v2(1))
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "100"
            assert client.get("/v2/health/ready").status_code == 200
        port = int(server.url.rsplit(":", 1)[1])
        # http_keep_alive: an idle keep-alive connection is closed after 1 s, not 30.
        idle = socket.create_connection(("127.0.0.1", port))
        idle.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        idle.settimeout(15)
        began, received = time.monotonic(), b""
        while chunk := idle.recv(4096):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 ")
        assert 0.5 < time.monotonic() - began < 5
        idle.close()
        # http_max_connections: the 17th connection is closed unanswered.
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        try:
            time.sleep(0.3)
            extra = socket.create_connection(("127.0.0.1", port))
            extra.settimeout(5)
            try:
                extra.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                assert extra.recv(100) == b""
            except (ConnectionResetError, BrokenPipeError):
                pass
            extra.close()
        finally:
            for sock in held:
                sock.close()
        output = server.output()
    assert "rate limit on: 0.01 calls/s per caller, 3 at once (infer calls" in output
