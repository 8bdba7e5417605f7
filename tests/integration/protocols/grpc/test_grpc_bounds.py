"""What one gRPC client can make the server hold is bounded (issue 13, items 3, 4 and 6).

Through real sockets: a raw HTTP/2 client (frames built here, HPACK literals) that never
opens its flow-control window, grpcio clients with gzip compression, and garbage bytes for
every service. Memory is the RSS of a real ``ferry serve`` subprocess, before and after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import grpc_server
from ferry.engine import Engine
from ferry.errors import ConfigError
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from ferry.protocols.grpc.server import GrpcLimits, build_server
from serving import Server, ferry_serve

INFER = "/inference.GRPCInferenceService/ModelInfer"
GARBAGE = b"\xff\xff\xff\xff not a protobuf"
MIB = 1 << 20


# ------------------------------------------------------------------ a raw HTTP/2 client

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_INITIAL_WINDOW_SIZE = 0x3, 0x4
REFUSED_STREAM = 0x7


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(
        ">I", stream) + payload


def _field(name: str, value: str) -> bytes:
    """One HPACK header field: literal, not indexed, no Huffman (RFC 7541 §6.2.2)."""
    raw_name, raw_value = name.encode(), value.encode()
    assert len(raw_name) < 127 and len(raw_value) < 127  # one-byte length prefixes
    return b"\x00" + bytes((len(raw_name),)) + raw_name + bytes((len(raw_value),)) + raw_value


class RawH2:
    """An HTTP/2 connection that opens streams but never lets the server send them DATA.

    Its SETTINGS give every stream an initial window of 0 and it sends no WINDOW_UPDATE, so
    no response message can be delivered: the server holds each one. A thread reads what
    the server sends (SETTINGS, HEADERS, RST_STREAM, GOAWAY) and acknowledges SETTINGS and
    PING as a live client does.
    """

    def __init__(self, target: str, *, window: int = 0) -> None:
        host, port = target.rsplit(":", 1)
        self.authority = target
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.settimeout(None)
        self.settings: dict[int, int] = {}
        self.answered: set[int] = set()  # streams that got HEADERS or RST_STREAM
        self.resets: Counter[int] = Counter()  # RST_STREAM error codes
        self.goaway: bytes | None = None  # the debug data of a GOAWAY
        self.got_settings, self.closed = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        self._next_stream = 1
        self._send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(
            SETTINGS, 0, 0, struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE, window)))
        threading.Thread(target=self._read, name="raw-h2", daemon=True).start()

    def calls(self, count: int, message: bytes, path: str = INFER) -> list[int]:
        """Open ``count`` streams, each one complete unary call; their stream ids."""
        head = b"".join(_field(n, v) for n, v in (
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", self.authority), ("content-type", "application/grpc"),
            ("te", "trailers")))
        body = b"\x00" + struct.pack(">I", len(message)) + message
        streams = list(range(self._next_stream, self._next_stream + 2 * count, 2))
        self._next_stream += 2 * count
        for chunk in range(0, count, 100):
            self._send(b"".join(_frame(HEADERS, END_HEADERS, s, head) + _frame(
                DATA, END_STREAM, s, body) for s in streams[chunk:chunk + 100]))
        return streams

    def wait_answered(self, streams: list[int], timeout: float) -> bool:
        """Wait until each of ``streams`` got HEADERS or RST_STREAM (or the connection ended)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.closed.is_set():
            if self.answered.issuperset(streams):
                return True
            time.sleep(0.02)
        return self.answered.issuperset(streams)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _send(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def _read(self) -> None:
        reader = self.sock.makefile("rb")
        try:
            while len(head := reader.read(9)) == 9:
                length, kind, flags = int.from_bytes(head[:3]), head[3], head[4]
                stream = int.from_bytes(head[5:]) & 0x7FFFFFFF
                payload = reader.read(length)
                self._handle(kind, flags, stream, payload)
        except OSError:
            pass
        finally:
            self.closed.set()

    def _handle(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            for at in range(0, len(payload), 6):
                key, value = struct.unpack(">HI", payload[at:at + 6])
                self.settings[key] = value
            self._send(_frame(SETTINGS, ACK, 0))
            self.got_settings.set()
        elif kind == PING and not flags & ACK:
            self._send(_frame(PING, ACK, 0, payload))
        elif kind == HEADERS:
            self.answered.add(stream)
        elif kind == RST_STREAM:
            self.resets[int.from_bytes(payload[:4])] += 1
            self.answered.add(stream)
        elif kind == GOAWAY:
            self.goaway = payload[8:]


# ----------------------------------------------------------------------------- servers


def _rss(server: Server) -> int:
    """The server process's resident memory, in bytes (VmRSS)."""
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def serve(grpc_repo) -> Iterator[Server]:
    """``ferry serve`` (default gRPC limits) serving mlp, in a process of its own."""
    with ferry_serve(grpc_repo.root, "--models", "mlp") as server:
        yield server


@contextlib.contextmanager
def _limited(repo, limits: GrpcLimits) -> Iterator[grpc_server.GrpcServed]:
    """A server in this process built with ``limits`` (tests/grpc_server.py otherwise)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grpc_server, "build_server", functools.partial(build_server, limits=limits))
        with grpc_server.serve_grpc(Engine(repo, models=["mlp"])) as running:
            yield running


def _one_row() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.array([[0.5, -1.0, 2.0, 0.25]], np.float32).tobytes())
    return request


# ------------------------------------------- item 3: streams per connection, calls in all


def test_a_connection_that_never_reads_holds_at_most_max_concurrent_streams(serve):
    """8,000 one-row calls on one zero-window connection: the server's memory stays put."""
    message = _one_row().SerializeToString()
    client = RawH2(serve.grpc)
    try:
        assert client.got_settings.wait(10)
        assert client.settings.get(SETTINGS_MAX_CONCURRENT_STREAMS) == 100
        # Warm up: fill the connection's 100 streams, and refuse some past them.
        assert client.wait_answered(client.calls(200, message), timeout=30)
        before = _rss(serve)
        started = time.monotonic()
        streams = client.calls(8000, message)
        assert client.wait_answered(streams, timeout=60), (
            f"{len(client.answered)} answered, closed={client.closed.is_set()}")
        elapsed = time.monotonic() - started
        grown = _rss(serve) - before
    finally:
        client.close()
    held = len(client.answered) - sum(client.resets.values())
    print(f"\n8000 calls on a zero window: RSS {before / MIB:.1f} MiB, +{grown / MIB:.2f} MiB "
          f"in {elapsed:.2f} s; {held} streams held, resets {dict(client.resets)}, "
          f"goaway {client.goaway}")
    assert held <= 100
    assert client.resets[REFUSED_STREAM] >= 8000
    assert grown < 16 * MIB  # before the bound: 3,246 answers held, +79 MiB
    # The server still answers everyone else.
    with grpc.insecure_channel(serve.grpc) as channel:
        assert pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            _one_row(), timeout=30).model_name == "mlp"


@pytest.mark.parametrize("count", [300, 1000])
def test_a_client_with_more_calls_than_streams_queues_them_itself(served, count):
    """grpc clients honour MAX_CONCURRENT_STREAMS: many calls at once on one channel all pass.

    With grpc's default "overload protection" the server counted streams longer than the
    client did and refused some: in one run, UNAVAILABLE for 45 of 300 and 509 of 1,000 calls.
    """
    with grpc.insecure_channel(served.target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(2):  # on a new connection (before SETTINGS), then on a warm one
            calls = [stub.ModelInfer.future(_one_row(), timeout=60) for _ in range(count)]
            assert {call.result().model_name for call in calls} == {"mlp"}


def test_calls_past_max_concurrent_rpcs_are_resource_exhausted(grpc_repo):
    with (_limited(grpc_repo, GrpcLimits(max_concurrent_rpcs=3)) as served,
          grpc.insecure_channel(served.target) as channel):
        health = health_pb2_grpc.HealthStub(channel)
        watches = [health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
                   for _ in range(3)]
        for watch in watches:  # each is open on the server
            next(watch)
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_one_row(), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "Concurrent RPC limit exceeded" in info.value.details()
        for watch in watches:
            watch.cancel()
        deadline = time.monotonic() + 10
        while True:  # the cancellations reach the server shortly
            try:
                reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_one_row(),
                                                                             timeout=10)
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "cancelled calls still counted"
                time.sleep(0.05)
        assert reply.model_name == "mlp"


def test_an_idle_connection_is_closed_one_with_a_call_open_is_not(grpc_repo):
    with _limited(grpc_repo, GrpcLimits(max_connection_idle=0.5)) as served:
        idle = RawH2(served.target, window=65535)
        try:
            assert idle.closed.wait(10), "the idle connection was not closed"
            assert idle.goaway == b"connection idle"
        finally:
            idle.close()
        with grpc.insecure_channel(served.target) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            time.sleep(2.0)  # four idle periods with the Watch open
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ModelInfer(_one_row(), timeout=10).model_name == "mlp"
            watch.cancel()
            time.sleep(1.5)  # closed again; the channel reconnects by itself
            assert stub.ModelInfer(_one_row(), timeout=10).model_name == "mlp"


def test_every_grpc_limit_is_in_the_table_of_docs_serving_with_its_default():
    doc = (Path(__file__).resolve().parents[4] / "docs" / "serving.md").read_text()
    table = doc[doc.index("| limit (`protocols/grpc/server.py`"):]
    rows = table[:table.index("\n\n")].splitlines()

    def shown(value: float) -> str:
        return f"{value:g} s" if isinstance(value, float) else str(value)

    missing = [f.name for f in dataclasses.fields(GrpcLimits)
               if not any(f"`{f.name}`" in row and f"| {shown(f.default)} |" in row
                          for row in rows)]
    assert missing == []


@pytest.mark.parametrize("field", ["max_concurrent_streams", "max_concurrent_rpcs",
                                   "max_connection_idle"])
def test_a_limit_that_would_stop_every_call_is_a_config_error(field):
    with pytest.raises(ConfigError, match=field):
        GrpcLimits(**{field: 0})


# ------------------------------------------------------------------- item 4: compression


def test_a_gzip_call_is_unimplemented_and_costs_the_server_nothing(serve):
    """8 calls of 63 MiB that gzip makes 63 KiB: refused at once, no memory kept or spent."""
    request = _one_row()
    request.raw_input_contents[0] = bytes(63 * MIB)
    with grpc.insecure_channel(serve.grpc) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ModelInfer(_one_row(), timeout=30).model_name == "mlp"
        before, slowest = _rss(serve), 0.0
        for _ in range(8):
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(request, timeout=30, compression=grpc.Compression.Gzip)
            slowest = max(slowest, time.monotonic() - started)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "gzip" in info.value.details() and "disabled" in info.value.details()
        grown = _rss(serve) - before
        print(f"\n8 gzip calls of 63 MiB: RSS +{grown / MIB:.2f} MiB, slowest {slowest:.2f} s")
        assert grown < 16 * MIB  # inflated, they cost +440 MB
        assert slowest < 5.0
        # Uncompressed calls on the same channel are served.
        assert stub.ModelInfer(_one_row(), timeout=10).model_name == "mlp"


# ---------------------------------------- item 6: garbage to health and reflection too


def _unary(channel, path):
    return channel.unary_unary(path)(GARBAGE, timeout=10)


def _server_stream(channel, path):
    return list(channel.unary_stream(path)(GARBAGE, timeout=10))


def _bidi(channel, path):
    valid = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
    return list(channel.stream_stream(path)(iter([valid, GARBAGE]), timeout=10))


GARBAGE_CALLS = [
    ("infer", _unary, INFER),
    ("health-check", _unary, "/grpc.health.v1.Health/Check"),
    ("health-watch", _server_stream, "/grpc.health.v1.Health/Watch"),
    ("reflection", _bidi, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
]


@pytest.mark.parametrize(("call", "path"), [c[1:] for c in GARBAGE_CALLS],
                         ids=[c[0] for c in GARBAGE_CALLS])
def test_garbage_bytes_are_invalid_argument_on_every_service(served, call, path):
    with grpc.insecure_channel(served.target) as channel:
        with pytest.raises(grpc.RpcError) as info:
            call(channel, path)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert "is not a valid" in info.value.details()
        # The services still answer valid requests.
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        assert "grpc.health.v1.Health" in {
            s.name for answer in listing for s in answer.list_services_response.service}


def test_a_watch_hears_of_a_change_after_another_watch_of_its_service_ended(grpc_repo):
    """grpcio-health-checking's Watch forgot the others when one watcher left; ferry's does not."""
    with (_limited(grpc_repo, GrpcLimits()) as served,
          grpc.insecure_channel(served.target) as channel):
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        first, second = (health.Watch(request, timeout=30) for _ in range(2))
        assert next(first).status == next(second).status == health_pb2.HealthCheckResponse.SERVING
        first.cancel()
        time.sleep(0.2)  # the cancellation reaches the server
        served.call(served.engine.stop(timeout=5))  # draining: not ready any more
        assert next(second).status == health_pb2.HealthCheckResponse.NOT_SERVING
        second.cancel()
