"""A bounded overload on every door (issue 16, deliver 2 and its "Done when").

Ten times the queue bound at once, on a real, deliberately slow ONNX model with one
instance and no batching:

* in refusal mode (``max_waiting = 0``) the requests past the queue are refused at once —
  429 with ``Retry-After`` (REST) or ``RESOURCE_EXHAUSTED`` (gRPC), answered while the
  accepted ones still wait — and every accepted request gets its own correct answer;
* by default (back-pressure: a line of ``max_waiting`` past the queue) every request is
  answered, correctly.

Each request carries different rows, so an answer given to the wrong request would show.
Doors: ferry's HTTP/1.1 protocol (the lane), the ASGI app under stock uvicorn (h11), gRPC.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import onnxruntime as ort
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

ROWS, WIDTH, QUEUE, AT_ONCE = 16, 512, 4, 40
BASE = {"instances": 1, "warmup": False, "inline_below_ms": 0.0, "max_queue": QUEUE,
        "runtime": {"intra_op_threads": 1}, "batching": {"enabled": False}}
MODES = {"refuse": ModelConfig.model_validate({**BASE, "max_waiting": 0}),
         # The default line; a generous wait bound, for a machine slowed by other work.
         "wait": ModelConfig.model_validate({**BASE, "max_wait_ms": 60_000})}
INPUTS = [np.random.default_rng(i).standard_normal((ROWS, WIDTH)).astype(np.float32)
          for i in range(AT_ONCE)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repository, list[np.ndarray]]:
    root = tmp_path_factory.mktemp("overload")
    repo = Repository(root / "repo")
    model = slow(root, layers=600)  # ~30 ms a request here
    import_model(repo, model, "slow", options=ImportOptions(sample_count=2))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    expected = [session.run(None, {"x": x})[0] for x in INPUTS]
    return repo, expected


def _binary(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps({"parameters": {"binary_data_output": True},
                           "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                                       "parameters": {"binary_data_size": x.nbytes}}]})
    return header + x.tobytes(), {"inference-header-content-length": str(len(header))}


def _check(outcomes: list[tuple[str, float, object]], expected: list[np.ndarray],
           mode: str) -> None:
    """Every accepted answer is its own request's; refusals (refuse mode) came first."""
    accepted = [(i, seconds) for i, (kind, seconds, _) in enumerate(outcomes) if kind == "ok"]
    refused = [seconds for kind, seconds, _ in outcomes if kind == "refused"]
    other = [(kind, detail) for kind, _, detail in outcomes if kind not in ("ok", "refused")]
    assert not other, other[:3]
    for i, _ in accepted:
        np.testing.assert_allclose(outcomes[i][2], expected[i], rtol=1e-4, atol=1e-5)
    if mode == "wait":
        assert len(accepted) == AT_ONCE and not refused
        return
    assert QUEUE < len(accepted) < AT_ONCE and refused, (len(accepted), len(refused))
    # Refused at once: every refusal was answered while accepted requests still waited
    # for the model (not after them, as a queue that only looked bounded would answer).
    last = max(seconds for _, seconds in accepted)
    assert max(refused) < last, (max(refused), last)


@pytest.fixture(params=["lane", "h11"])
def door(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("mode", list(MODES))
async def test_rest_ten_times_the_queue_at_once(built, door: str, mode: str) -> None:
    repo, expected = built
    engine = Engine(repo, defaults=MODES[mode])
    with serve(engine, repo, lane=True if door == "lane" else "h11",
               max_body_bytes=8 << 20) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=120,
                                     limits=httpx.Limits(max_connections=AT_ONCE)) as client:

            async def one(x: np.ndarray) -> tuple[str, float, object]:
                body, headers = _binary(x)
                start = time.monotonic()
                response = await client.post("/v2/models/slow/infer", content=body,
                                             headers={**headers, "Connection": "keep-alive"})
                seconds = time.monotonic() - start
                if response.status_code == 429:
                    assert int(response.headers["retry-after"]) >= 1
                    assert "overloaded" in response.json()["error"]
                    return "refused", seconds, None
                if response.status_code != 200:
                    return str(response.status_code), seconds, response.text
                header_length = int(response.headers["inference-header-content-length"])
                data = np.frombuffer(response.content[header_length:], dtype=np.float32)
                return "ok", seconds, data.reshape(ROWS, WIDTH)

            # Open the connections first, so the load arrives at once.
            await asyncio.gather(*(client.get("/v2/health/live") for _ in range(AT_ONCE)))
            outcomes = await asyncio.gather(*(one(x) for x in INPUTS))
    _check(list(outcomes), expected, mode)


@pytest.mark.parametrize("mode", list(MODES))
def test_grpc_ten_times_the_queue_at_once(built, mode: str) -> None:
    repo, expected = built
    engine = Engine(repo, defaults=MODES[mode])
    options = [("grpc.max_send_message_length", 8 << 20),
               ("grpc.max_receive_message_length", 8 << 20)]
    with serve_grpc(engine, max_message_bytes=8 << 20) as served, \
            grpc.insecure_channel(served.target, options=options) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        grpc.channel_ready_future(channel).result(timeout=30)
        requests = []
        for x in INPUTS:
            request = pb.ModelInferRequest(model_name="slow")
            request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
            request.raw_input_contents.append(x.tobytes())
            requests.append(request)
        starts = []
        calls = []
        for request in requests:
            starts.append(time.monotonic())
            calls.append(stub.ModelInfer.future(request, timeout=120))
        outcomes: list[tuple[str, float, object]] = []
        for start, call in zip(starts, calls, strict=True):
            try:
                reply = call.result()
            except grpc.RpcError as exc:
                seconds = _finished(call, start)
                if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert "overloaded" in exc.details()
                    outcomes.append(("refused", seconds, None))
                else:
                    outcomes.append((exc.code().name, seconds, exc.details()))
                continue
            data = np.frombuffer(reply.raw_output_contents[0], dtype=np.float32)
            outcomes.append(("ok", _finished(call, start), data.reshape(ROWS, WIDTH)))
    _check(outcomes, expected, mode)


_DONE: dict[int, float] = {}


def _finished(call: grpc.Future, start: float) -> float:
    """Seconds from sending ``call`` to its answer (recorded by its done-callback)."""
    return _DONE[id(call)] - start


def _record(call: grpc.Future) -> None:
    _DONE[id(call)] = time.monotonic()


@pytest.fixture(autouse=True)
def _record_grpc_answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Time each gRPC future's answer as it arrives (its done-callback), not when read."""
    original = pb_grpc.GRPCInferenceServiceStub.__init__

    def init(self: pb_grpc.GRPCInferenceServiceStub, channel: grpc.Channel) -> None:
        original(self, channel)
        infer = self.ModelInfer

        class Timed:
            def __call__(self, *args: object, **kwargs: object) -> object:
                return infer(*args, **kwargs)

            def future(self, *args: object, **kwargs: object) -> grpc.Future:
                call = infer.future(*args, **kwargs)
                call.add_done_callback(_record)
                return call

        self.ModelInfer = Timed()

    monkeypatch.setattr(pb_grpc.GRPCInferenceServiceStub, "__init__", init)
    _DONE.clear()
    yield
