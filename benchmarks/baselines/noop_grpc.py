"""The gRPC transport's ceiling: a no-op ``grpc.aio`` ``GRPCInferenceService`` (ModelInfer).

    python -m benchmarks.baselines.noop_grpc --port PORT --answer FILE [--host 127.0.0.1]

What the no-op ASGI app (``noop_app.py``) is to ferry's REST door, this is to its gRPC door:
the most requests/s a ``ModelInfer`` servicer on ``grpc.aio`` can answer on one core. It is
registered with the generated ``add_GRPCInferenceServiceServicer_to_server`` (ferry's own
generated code, ``ferry.protocols.grpc._generated``), so grpc parses each request into a
``ModelInferRequest`` as for ferry, but it never decodes the request's tensors and never runs
a model: every call is answered with the same pre-built ``ModelInferResponse``, read once at
startup from FILE (the harness writes the answer ferry gives for the workload:
``Workload.grpc_answer``). Ferry answers within the same process set-up: the same server
options (:data:`SERVER_OPTIONS`), uvloop when installed, ``gc.freeze`` after startup.

A second method, ``/benchmarks.NoopGrpc/Answered`` (bytes in, the ASCII count out), tells the
harness how many ModelInfer calls the servicer answered, so that answers grpc gave without
the servicer (a refused call) are counted as errors, as ferry's ``/metrics`` allows for ferry.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import grpc

from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc

#: The method that answers how many ModelInfer calls were answered (raw bytes, no protobuf).
COUNT_SERVICE = "benchmarks.NoopGrpc"
COUNT_METHOD = f"/{COUNT_SERVICE}/Answered"

#: ferry's ``DEFAULT_MAX_MESSAGE_BYTES`` (``ferry serve``'s ``max_message_bytes`` default).
MAX_MESSAGE_BYTES = 64 << 20
#: ``GrpcLimits().max_concurrent_rpcs``: ferry passes it as ``maximum_concurrent_rpcs``.
MAX_CONCURRENT_RPCS = 1024

#: The options ferry's gRPC server is built with (``ferry.protocols.grpc.server._options``
#: with ``ferry serve``'s defaults: ``max_message_bytes`` 64 MiB and ``GrpcLimits()``), in
#: the same order; ``tests/integration/bench/test_bench_noop_grpc.py`` fails if ferry's change.
#: Shared, so the ceiling is that of the same HTTP/2 set-up: SO_REUSEPORT, the 64 MiB receive
#: limit and no send limit, 100 streams per connection (announced in SETTINGS), grpc's
#: "overload protection" off, connections closed after 300 s idle, and identity as the only
#: compression (ferry refuses compressed requests). Not shared: ferry's other two services
#: (health, reflection), which no ModelInfer call touches, and its lenient request parser (a
#: try/except around the same ``ModelInferRequest.FromString``).
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 1),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_concurrent_streams", 100),
    ("grpc.http.overload_protection", 0),
    ("grpc.max_connection_idle_ms", 300_000),
    ("grpc.server_handshake_timeout_ms", 10_000),
    ("grpc.compression_enabled_algorithms_bitset", 1),
]


class NoopInferenceServicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """ModelInfer answers ``answer`` to every request; the other methods stay UNIMPLEMENTED."""

    def __init__(self, answer: pb.ModelInferResponse) -> None:
        self.answer = answer
        self.answered = 0

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any
                         ) -> pb.ModelInferResponse:
        """The fixed answer; the request's tensors are not looked at."""
        self.answered += 1
        return self.answer


def build_server(answer: pb.ModelInferResponse) -> tuple[grpc.aio.Server, NoopInferenceServicer]:
    """The no-op server (not bound, not started) and its servicer."""
    server = grpc.aio.server(options=SERVER_OPTIONS, maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS)
    servicer = NoopInferenceServicer(answer)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)

    async def answered(request: bytes, context: Any) -> bytes:
        return b"%d" % servicer.answered

    # No (de)serializers: bytes in, bytes out.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        COUNT_SERVICE, {"Answered": grpc.unary_unary_rpc_method_handler(answered)}),))
    return server, servicer


async def serve(answer: pb.ModelInferResponse, host: str, port: int) -> None:
    """Bind, start, and serve until the process is stopped (SIGTERM by the harness)."""
    server, _ = build_server(answer)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"cannot listen on {host}:{port}")
    await server.start()
    gc.collect()
    gc.freeze()  # as ferry serve does once started (ferry.server._freeze_startup_objects)
    print(f"no-op grpc.aio ModelInfer on {host}:{port}", flush=True)
    await server.wait_for_termination()


def command(python: str, port: int, answer: Path, host: str = "127.0.0.1") -> list[str]:
    """The command line that runs this server (from the repository root)."""
    return [python, "-m", "benchmarks.baselines.noop_grpc", "--host", host, "--port", str(port),
            "--answer", str(answer)]


def _event_loop_run(coro: Coroutine[Any, Any, None]) -> None:
    """uvloop when installed, as ``ferry serve`` runs (ferry.server._event_loop_run)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: serve the answer in ``--answer`` (a serialized ModelInferResponse)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baselines.noop_grpc",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answer", type=Path, required=True,
                        help="file holding a serialized ModelInferResponse")
    args = parser.parse_args(argv)
    answer = pb.ModelInferResponse.FromString(args.answer.read_bytes())
    _event_loop_run(serve(answer, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
