"""Issue 16, done when: 200 slow clients holding half-sent heads do not stop a normal client.

A real ``ferry serve`` (a subprocess, default settings but a 4 s head and handshake
timeout so the test stays short). 200 connections to one port each send part of a request
head (REST) or of the HTTP/2 preface (gRPC) and then trickle one byte at a time, never
finishing; meanwhile a normal client sends 200 requests one after the other on that port,
and the 99th percentile of its latencies must stay under 50 ms. Then the slow clients must
be cut off by the server (REST: 408 naming the head timeout; gRPC: closed), not by the test.

This is a bound, not a benchmark: on an idle machine the normal client's p99 is a few
milliseconds either way; what fails it is a server that serves one connection at a time or
lets unfinished heads hold a worker.
"""

from __future__ import annotations

import contextlib
import math
import select
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import orjson
import pytest

from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from rest_server import build_repository
from serving import Server, ferry_serve

pytestmark = pytest.mark.timeout(180)

SLOW = 200
REQUESTS = 200
HEAD_TIMEOUT = 4.0
ROW = [0.5, -1.0, 2.0, 0.25]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = build_repository(tmp_path_factory.mktemp("slow-clients"))
    env = {"FERRY_HTTP_HEAD_TIMEOUT": str(HEAD_TIMEOUT),
           "FERRY_GRPC_HANDSHAKE_TIMEOUT": str(HEAD_TIMEOUT)}
    with ferry_serve(repo.root, env=env) as served:
        yield served


class Tricklers:
    """``SLOW`` connections that send ``start`` and then one byte of ``drip`` every 0.2 s."""

    def __init__(self, port: int, start: bytes, drip: bytes) -> None:
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(SLOW)]
        for sock in self.sockets:
            sock.sendall(start)
        self._drip = drip
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        step = 0
        while not self._stop.wait(0.2):
            byte = self._drip[step % len(self._drip):][:1]
            step += 1
            for sock in self.sockets:
                # Cut off by the server: what the test checks afterwards.
                with contextlib.suppress(OSError):
                    sock.send(byte)

    def still_open(self, *, answered: bool) -> int:
        """How many the server has not closed yet (nor, unless ``answered``, answered)."""
        readable, _, _ = select.select(self.sockets, [], [], 0)
        if not answered:
            return len(self.sockets) - len(readable)
        closed = 0
        for sock in readable:  # a gRPC server sends its SETTINGS first: data, not a close
            try:
                closed += sock.recv(1, socket.MSG_PEEK) == b""
            except ConnectionResetError:
                closed += 1
        return len(self.sockets) - closed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def endings(self, within: float) -> list[bytes]:
        """What each connection received before the server closed it (within ``within`` s)."""
        got = {sock: b"" for sock in self.sockets}
        open_ = set(self.sockets)
        deadline = time.monotonic() + within
        while open_ and time.monotonic() < deadline:
            readable, _, _ = select.select(list(open_), [], [], 0.2)
            for sock in readable:
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                got[sock] += data
                if not data:
                    open_.discard(sock)
        for sock in self.sockets:
            sock.close()
        assert not open_, f"{len(open_)} slow connections still open after {within} s"
        return list(got.values())


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def test_slow_rest_heads_do_not_stop_a_normal_client(server):
    port = int(server.url.rsplit(":", 1)[1])
    slow = Tricklers(port, b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                     b"abcdefghij")
    body = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                     "data": ROW}]})
    latencies = []
    try:
        with httpx.Client(base_url=server.url, timeout=10,
                          headers={"content-type": "application/json"}) as client:
            for _ in range(5):  # warm the connection
                client.post("/v2/models/mlp/infer", content=body)
            for _ in range(REQUESTS):
                began = time.perf_counter()
                response = client.post("/v2/models/mlp/infer", content=body)
                latencies.append(time.perf_counter() - began)
                assert response.status_code == 200, response.text
        # The slow ones were all there meanwhile, unanswered.
        assert slow.still_open(answered=False) == SLOW
    finally:
        slow.stop()
    print(f"p99 {_p99(latencies) * 1000:.1f} ms, median {sorted(latencies)[REQUESTS // 2] * 1000:.1f} ms")
    assert _p99(latencies) < 0.050, f"p99 {_p99(latencies) * 1000:.1f} ms"
    endings = slow.endings(within=HEAD_TIMEOUT + 10)
    assert all(e.startswith(b"HTTP/1.1 408 ") for e in endings), endings[:3]
    assert all(b"the request head did not arrive within 4 s" in e for e in endings), endings[0]


def test_slow_grpc_handshakes_do_not_stop_a_normal_client(server):
    port = int(server.grpc.rsplit(":", 1)[1])
    slow = Tricklers(port, b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n"[:3])
    message = pb.ModelInferRequest(model_name="mlp")
    message.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    message.raw_input_contents.append(np.array([ROW], np.float32).tobytes())
    latencies = []
    try:
        with grpc.insecure_channel(server.grpc) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for _ in range(5):
                stub.ModelInfer(message, timeout=10)
            for _ in range(REQUESTS):
                began = time.perf_counter()
                stub.ModelInfer(message, timeout=10)
                latencies.append(time.perf_counter() - began)
        assert slow.still_open(answered=True) == SLOW
    finally:
        slow.stop()
    print(f"p99 {_p99(latencies) * 1000:.1f} ms, median {sorted(latencies)[REQUESTS // 2] * 1000:.1f} ms")
    assert _p99(latencies) < 0.050, f"p99 {_p99(latencies) * 1000:.1f} ms"
    # Cut off by the server after the handshake timeout, with nothing served to them.
    endings = slow.endings(within=HEAD_TIMEOUT + 10)
    assert len(endings) == SLOW
