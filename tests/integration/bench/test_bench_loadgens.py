"""The real load generators against real loopback servers, for one second each.

wrk with benchmarks/wrk/post.lua must POST the body file and count every status outside
2xx; h2load with the harness's gRPC framing must make calls a real grpcio server accepts.
Both tools are installed by ``make bench`` (apt-get), so these skip, with the reason, where
they are missing.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from benchmarks.loadgen import h2load_command, parse_h2load, parse_wrk, wrk_command
from benchmarks.workloads import Workload, grpc_method

BODY = b'{"data": [[0.0, 0.5, 1.0]]}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the servers under test speak
    seen: list[bytes] = []
    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).count += 1
            status = 503 if type(self).count % 4 == 0 else 200
            if len(self.seen) < 5:
                self.seen.append(body)
        answer = b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench "
                    "installs it with apt-get)")
def test_wrk_script_posts_the_body_and_counts_non_2xx(http_server: str, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(BODY)
    command = wrk_command(http_server, body, connections=2, seconds=1, timeout_s=5)
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    result = parse_wrk(done.stdout, 2)
    assert _Handler.seen and set(_Handler.seen) == {BODY}
    assert result.requests > 10
    assert result.errors >= result.requests // 4 - 2  # every 4th answer is a 503
    assert "503: " in result.detail and "200: " in result.detail


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load is not installed (make "
                    "bench installs nghttp2-client with apt-get)")
def test_h2load_grpc_framing_makes_calls_a_grpc_server_accepts(tmp_path: Path) -> None:
    import grpc
    from tritonclient.grpc import service_pb2

    received: list[service_pb2.ModelInferRequest] = []

    def infer(request: service_pb2.ModelInferRequest, context: object) -> object:
        if len(received) < 3:
            received.append(request)
        return service_pb2.ModelInferResponse(model_name=request.model_name)

    server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(2))
    handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(
            infer, request_deserializer=service_pb2.ModelInferRequest.FromString,
            response_serializer=service_pb2.ModelInferResponse.SerializeToString)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        w = Workload("W1", "t", "digits", tmp_path / "none.onnx", "x", "y",
                     tuple([0.25] * 64), tuple([0.0] * 10))
        body = tmp_path / "body.bin"
        body.write_bytes(w.grpc_body())
        log = tmp_path / "log.tsv"
        command = h2load_command(f"http://127.0.0.1:{port}{grpc_method()}", body,
                                 connections=2, seconds=1, warmup=0.5, log_file=log)
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
        with log.open() as lines:
            result = parse_h2load(done.stdout, lines, 2)
    finally:
        server.stop(grace=None)
    assert result.requests > 10 and result.errors == 0
    assert result.p50_ms is not None and result.p99_ms is not None
    assert received[0].model_name == "digits"
    assert np.array_equal(np.frombuffer(received[0].raw_input_contents[0], np.float32),
                          np.full(64, 0.25, np.float32))


class _TypeRecorder(BaseHTTPRequestHandler):
    """Answers 200 and records each request's Content-Type header (None when absent)."""

    protocol_version = "HTTP/1.1"
    types: list[str | None] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.types.append(self.headers.get("Content-Type"))
        answer = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def type_server() -> Iterator[str]:
    _TypeRecorder.types = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TypeRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2/models/digits/infer"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _NoProcess:
    def cpu_seconds(self) -> float:
        return 0.0


@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("taskset") is None,
                    reason="wrk (make bench installs it) or taskset missing")
def test_the_no_content_type_route_sends_no_content_type(type_server: str,
                                                         tmp_path: Path) -> None:
    """http_runs with content_type=None: the checks and wrk's load carry no Content-Type."""
    from benchmarks.results import FERRY, V2_JSON, V2_JSON_NO_TYPE
    from benchmarks.run import Bench, Options

    bench = Bench(Options(duration=1.0, warmup=1.0, workdir=tmp_path, out=tmp_path / "r.md",
                          groups=frozenset({"ferry"}), connections=(2,), cold_runs=0,
                          rounds=1))
    w = Workload("W1", "t", "digits", tmp_path / "none.onnx", "x", "y", (0.5,), (0.0,))
    checked: list[bytes] = []
    bench.http_runs(_NoProcess(), w, FERRY, V2_JSON_NO_TYPE, type_server,  # type: ignore[arg-type]
                    w.v2_body(), lambda body, _: checked.append(body), content_type=None)
    untyped = list(_TypeRecorder.types)
    _TypeRecorder.types.clear()
    bench.http_runs(_NoProcess(), w, FERRY, V2_JSON, type_server,  # type: ignore[arg-type]
                    w.v2_body(), lambda body, _: None)
    typed = list(_TypeRecorder.types)
    first, second = bench.report.measurements
    assert first.route == V2_JSON_NO_TYPE and first.result is not None, first.note
    assert first.result.requests > 10 and first.result.errors == 0
    assert len(untyped) > 10 and set(untyped) == {None}
    assert len(checked) == 2  # before and after the load, each with the 200 answer
    assert second.result is not None and set(typed) == {"application/json"}
