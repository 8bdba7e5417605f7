"""Issue 14: every call, on every door, passes one call context and one policy chain.

Three ways in, each over real sockets with real clients:

* ``ferry`` — what ``ferry serve`` runs: ferry's HTTP/1.1 protocol (its inference lane
  answers plain inference requests itself; everything else goes to the ASGI app) and gRPC
  (a real ``grpc.aio`` server) on the same event loop, over one engine;
* ``uvicorn-h11`` — the same ASGI app under stock uvicorn with h11 (the ASGI middleware
  doors), over a second engine.

A recording policy in each engine's chain keeps the context and action of every call it
sees and refuses a marked caller (``Authorization: Bearer refuse-me``). Each call kind
(inference by every route, metadata, readiness, server metadata, repository index, load,
unload) is made through every door, and the test checks that the policy saw it with a
complete context — and that the marked caller is refused there, before the engine acts.
The drift cases of the issue (``%252F`` in a model name, no ``Content-Type``, a ``+json``
type, an unreadable type, a body over the limit) answer the same through every REST door.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import numpy as np
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferry.call import CallContext
from ferry.engine import Engine
from ferry.errors import PermissionDeniedError
from ferry.policy import Action, Kind, Stage
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from ferry.protocols.grpc.server import bind, build_server
from rest_server import MAX_BODY, Served, build_repository, serve

pytestmark = pytest.mark.timeout(300)

REFUSED = "Bearer refuse-me"
ROW = [0.5, -1.0, 2.0, 0.25]
V2_BODY = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                    "data": ROW}]})


class RecordingPolicy:
    """Keeps what it saw; refuses the marked caller (a test policy, not a mock: it runs)."""

    stage = Stage.AUTHORIZE

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, object], Action]] = []

    def check(self, call: CallContext, action: Action) -> None:
        self.seen.append(({"request_id": call.request_id, "protocol": call.protocol,
                           "door": call.door, "peer": call.peer, "deadline": call.deadline,
                           "credentials": call.credentials}, action))
        if call.credentials == REFUSED:
            raise PermissionDeniedError(f"{action.kind.value} is not allowed for this caller")

    def find(self, request_id: str) -> tuple[dict[str, object], Action]:
        found = [entry for entry in self.seen if entry[0]["request_id"] == request_id]
        assert len(found) == 1, f"the policy saw request {request_id!r} {len(found)} times"
        return found[0]


@dataclass
class Door:
    """One server the tests call: its REST URL, gRPC target (ferry only), engine, policy."""

    name: str
    rest: Served
    policy: RecordingPolicy
    target: str | None = None


async def _start_grpc(engine: Engine) -> tuple[grpc.aio.Server, int]:
    server = build_server(engine)
    port = bind(server, "127.0.0.1", 0)
    await server.start()
    return server, port


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Door]]:
    repo = build_repository(tmp_path_factory.mktemp("one-door"))
    ours, stock = RecordingPolicy(), RecordingPolicy()
    with serve(Engine(repo, policies=[ours]), repo) as rest, \
            serve(Engine(repo, policies=[stock]), repo, lane="h11") as h11:
        server, port = rest.call(_start_grpc(rest.engine))
        try:
            yield {"ferry": Door("ferry", rest, ours, f"127.0.0.1:{port}"),
                   "uvicorn-h11": Door("uvicorn-h11", h11, stock)}
        finally:
            rest.call(server.stop(grace=1))


_counter = iter(range(1_000_000))


def _rid(tag: str) -> str:
    return f"{tag}-{next(_counter)}-{time.monotonic_ns()}"


#: (what, method, path, body, headers, expected kind, model) of each REST call kind.
REST_CALLS = [
    ("v2 infer", "POST", "/v2/models/mlp/infer", V2_BODY,
     {"content-type": "application/json"}, Kind.INFER, "mlp"),
    ("v2 infer, chunked", "POST", "/v2/models/mlp/infer", None,
     {"content-type": "application/json"}, Kind.INFER, "mlp"),
    ("predict", "POST", "/predict/mlp", orjson.dumps({"data": [ROW]}),
     {"content-type": "application/json"}, Kind.INFER, "mlp"),
    ("tf serving predict", "POST", "/v1/models/mlp:predict",
     orjson.dumps({"instances": [ROW]}), {"content-type": "application/json"},
     Kind.INFER, "mlp"),
    ("model metadata", "GET", "/v2/models/mlp", None, {}, Kind.MODEL_METADATA, "mlp"),
    ("model ready", "GET", "/v2/models/mlp/ready", None, {}, Kind.MODEL_READY, "mlp"),
    ("server ready", "GET", "/v2/health/ready", None, {}, Kind.READY, None),
    ("server live", "GET", "/v2/health/live", None, {}, Kind.LIVE, None),
    ("server metadata", "GET", "/v2", None, {}, Kind.SERVER_METADATA, None),
    ("repository index", "POST", "/v2/repository/index", b"", {}, Kind.INDEX, None),
    ("load", "POST", "/v2/repository/models/mlp/load", b"", {}, Kind.LOAD, "mlp"),
]


def _send(client: httpx.Client, method: str, path: str, body: bytes | None,
          headers: dict[str, str]) -> httpx.Response:
    if body is None and method == "POST":  # chunked: the app's route reads it, not a lane
        return client.request(method, path, content=iter([V2_BODY[:7], V2_BODY[7:]]),
                              headers=headers)
    return client.request(method, path, content=body, headers=headers)


@pytest.mark.parametrize("door", ["ferry", "uvicorn-h11"])
@pytest.mark.parametrize("call", REST_CALLS, ids=[c[0] for c in REST_CALLS])
def test_every_rest_call_reaches_the_chain_with_a_complete_context(doors, door, call):
    _what, method, path, body, headers, kind, model = call
    d = doors[door]
    rid = _rid("ok")
    with httpx.Client(base_url=d.rest.url, timeout=30) as client:
        response = _send(client, method, path, body,
                         {**headers, "x-request-id": rid, "authorization": "Bearer good"})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == rid
    seen, action = d.policy.find(rid)
    assert seen["protocol"] == "rest"
    assert seen["credentials"] == "Bearer good"
    assert str(seen["peer"]).startswith("127.0.0.1:")
    assert (action.kind, action.model) == (kind, model)
    # ferry's lane answers plain inference itself; every other request is the ASGI app's.
    lane = door == "ferry" and kind is Kind.INFER and path.startswith(("/v2", "/predict")) \
        and body is not None
    assert seen["door"] == ("http11" if lane else "asgi")


@pytest.mark.parametrize("door", ["ferry", "uvicorn-h11"])
@pytest.mark.parametrize("call", [*REST_CALLS, (
    "unload", "POST", "/v2/repository/models/mlp/unload", b"", {}, Kind.UNLOAD, "mlp")],
    ids=[c[0] for c in REST_CALLS] + ["unload"])
def test_a_refused_caller_is_refused_on_every_rest_call(doors, door, call):
    _what, method, path, body, headers, kind, _model = call
    d = doors[door]
    rid = _rid("no")
    with httpx.Client(base_url=d.rest.url, timeout=30) as client:
        response = _send(client, method, path, body,
                         {**headers, "x-request-id": rid, "authorization": REFUSED})
        assert response.status_code == 403, response.text
        assert kind.value in response.json()["error"]
        assert response.headers["x-request-id"] == rid
        # Refused before the engine acted: the model is still served.
        assert client.get("/v2/models/mlp/ready").status_code == 200
    assert d.policy.find(rid)[1].kind is kind


def _grpc_calls() -> list[tuple[str, str, object, Kind]]:
    infer = pb.ModelInferRequest(model_name="mlp")
    infer.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    infer.raw_input_contents.append(np.array([ROW], np.float32).tobytes())
    return [
        ("ModelInfer", "ModelInfer", infer, Kind.INFER),
        ("ModelMetadata", "ModelMetadata", pb.ModelMetadataRequest(name="mlp"),
         Kind.MODEL_METADATA),
        ("ModelReady", "ModelReady", pb.ModelReadyRequest(name="mlp"), Kind.MODEL_READY),
        ("ServerReady", "ServerReady", pb.ServerReadyRequest(), Kind.READY),
        ("ServerLive", "ServerLive", pb.ServerLiveRequest(), Kind.LIVE),
        ("ServerMetadata", "ServerMetadata", pb.ServerMetadataRequest(),
         Kind.SERVER_METADATA),
        ("RepositoryIndex", "RepositoryIndex", pb.RepositoryIndexRequest(), Kind.INDEX),
        ("RepositoryModelLoad", "RepositoryModelLoad",
         pb.RepositoryModelLoadRequest(model_name="mlp"), Kind.LOAD),
        ("RepositoryModelUnload", "RepositoryModelUnload",
         pb.RepositoryModelUnloadRequest(model_name="mlp"), Kind.UNLOAD),
        ("health Check", "health", health_pb2.HealthCheckRequest(service=""), Kind.READY),
    ]


GRPC_CALLS = _grpc_calls()


def _grpc(channel: grpc.Channel, method: str, message: object, rid: str, auth: str,
          timeout: float = 30.0) -> object:
    metadata = (("x-request-id", rid), ("authorization", auth))
    if method == "health":
        return health_pb2_grpc.HealthStub(channel).Check(message, metadata=metadata,
                                                         timeout=timeout)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    return getattr(stub, method)(message, metadata=metadata, timeout=timeout)


@pytest.mark.parametrize("call", GRPC_CALLS, ids=[c[0] for c in GRPC_CALLS])
def test_every_grpc_call_reaches_the_chain_with_a_complete_context(doors, call):
    _what, method, message, kind = call
    d = doors["ferry"]
    rid = _rid("grpc")
    with grpc.insecure_channel(d.target) as channel:
        if kind is Kind.UNLOAD:  # put it back after: the other tests need the model
            _grpc(channel, method, message, rid, "Bearer good")
            _grpc(channel, "RepositoryModelLoad",
                  pb.RepositoryModelLoadRequest(model_name="mlp"), _rid("reload"), "Bearer good")
        else:
            before = time.monotonic()
            _grpc(channel, method, message, rid, "Bearer good", timeout=20.0)
    seen, action = d.policy.find(rid)
    assert (seen["protocol"], seen["door"], seen["credentials"]) == (
        "grpc", "grpc", "Bearer good")
    assert "127.0.0.1" in str(seen["peer"])
    assert action.kind is kind
    if kind is not Kind.UNLOAD:
        # The gRPC deadline is the call's: about 20 s after the call began.
        assert seen["deadline"] is not None
        assert 15 < float(seen["deadline"]) - before <= 20.5  # type: ignore[arg-type]


@pytest.mark.parametrize("call", GRPC_CALLS, ids=[c[0] for c in GRPC_CALLS])
def test_a_refused_caller_is_refused_on_every_grpc_call(doors, call):
    _what, method, message, kind = call
    d = doors["ferry"]
    rid = _rid("grpc-no")
    with grpc.insecure_channel(d.target) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            _grpc(channel, method, message, rid, REFUSED)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert kind.value in (caught.value.details() or "")
        ready = pb_grpc.GRPCInferenceServiceStub(channel).ModelReady(
            pb.ModelReadyRequest(name="mlp"), timeout=30)
        assert ready.ready  # refused before the engine acted
    assert d.policy.find(rid)[1].kind is kind


# ----------------------------------------------------------------- the drift cases


@pytest.mark.parametrize("door", ["ferry", "uvicorn-h11"])
def test_an_encoded_slash_names_the_same_model_on_every_door(doors, door):
    # %252F decodes once to %2F: the model "a%2Fb", never "a/b" (which would be a path).
    with httpx.Client(base_url=doors[door].rest.url, timeout=30) as client:
        for path in ("/v2/models/a%252Fb/infer", "/predict/a%252Fb"):
            response = client.post(path, content=V2_BODY,
                                    headers={"content-type": "application/json"})
            assert response.status_code == 404, response.text
            assert "'a%2Fb'" in response.json()["error"]
            # With a policy chain, a miss names only what was asked for, never other models.
            assert "mlp" not in response.json()["error"]


@pytest.mark.parametrize("door", ["ferry", "uvicorn-h11"])
@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8",
                                          "application/vnd.ferry+json"])
def test_json_without_or_with_any_json_type_is_answered_on_every_door(doors, door,
                                                                       content_type):
    d = doors[door]
    rid = _rid("ct")
    headers = {"x-request-id": rid}
    if content_type is not None:
        headers["content-type"] = content_type
    with httpx.Client(base_url=d.rest.url, timeout=30) as client:
        response = client.post("/v2/models/mlp/infer", content=V2_BODY, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"] == [1, 3]
    if door == "ferry":  # no Content-Type (tritonclient) takes the inference lane too
        assert d.policy.find(rid)[0]["door"] == "http11"


@pytest.mark.parametrize("door", ["ferry", "uvicorn-h11"])
@pytest.mark.parametrize("path", ["/v2/models/mlp/infer", "/predict/mlp"])
def test_an_unreadable_content_type_is_415_on_every_door(doors, door, path):
    with httpx.Client(base_url=doors[door].rest.url, timeout=30) as client:
        response = client.post(path, content=V2_BODY, headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "'text/plain' is not accepted here" in response.json()["error"]


@pytest.mark.parametrize("path", ["/v2/models/mlp/infer", "/predict/mlp",
                                  "/v1/models/mlp:predict", "/v2/repository/index"])
def test_a_body_over_the_limit_is_413_the_same_way_on_every_door(doors, path):
    body = b"[" + b" " * MAX_BODY + b"]"
    answers = []
    for door in doors.values():
        with httpx.Client(base_url=door.rest.url, timeout=30) as client:
            response = client.post(path, content=body,
                                   headers={"content-type": "application/json"})
        assert response.status_code == 413, door.name
        answers.append(response.json())
    assert answers[0]["error"].startswith(
        f"request body of {len(body)} bytes is larger than the limit of {MAX_BODY} bytes")
    assert all(answer == answers[0] for answer in answers), answers


@pytest.mark.parametrize("door", ["ferry", "uvicorn-h11"])
def test_unload_and_load_reach_the_chain_with_the_caller_context(doors, door):
    d = doors[door]
    unload, load = _rid("unload"), _rid("load")
    with httpx.Client(base_url=d.rest.url, timeout=30) as client:
        good = {"authorization": "Bearer good"}
        assert client.post("/v2/repository/models/mlp/unload",
                           headers={**good, "x-request-id": unload}).status_code == 200
        assert client.get("/v2/models/mlp/ready").status_code == 404  # not served
        assert client.post("/v2/repository/models/mlp/load",
                           headers={**good, "x-request-id": load}).status_code == 200
        assert client.get("/v2/models/mlp/ready").status_code == 200
    for rid, kind in ((unload, Kind.UNLOAD), (load, Kind.LOAD)):
        seen, action = d.policy.find(rid)
        assert (action.kind, action.model) == (kind, "mlp")
        assert (seen["protocol"], seen["door"], seen["credentials"]) == (
            "rest", "asgi", "Bearer good")


def test_the_credentials_never_show_in_the_context_repr():
    call = CallContext("r", "rest", "asgi", credentials="Bearer secret-token")
    assert "secret-token" not in repr(call)
    assert "credentials=<hidden>" in repr(call)
