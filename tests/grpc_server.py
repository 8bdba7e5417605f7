"""A real gRPC server for tests: the real Engine over real ONNX models, on a free port.

The server runs on its own event loop in a thread (as ``ferry serve`` runs it on its loop),
so synchronous clients (tritonclient, grpcio stubs) can call it from the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import protocol_models
from builders import mlp_onnx
from ferry.engine import Engine
from ferry.formats import ImportOptions, import_model
from ferry.protocols.grpc.server import bind, build_server
from ferry.repository import Repository

MLP_LABELS = ["cat", "dog", "eel"]


@dataclass
class GrpcServed:
    target: str
    engine: Engine
    loop: asyncio.AbstractEventLoop

    def call(self, coro, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def build_repository(root: Path) -> Repository:
    repo = Repository(root / "repo")
    protocol_models.import_all(repo, root / "models")
    import_model(repo, mlp_onnx(root / "models" / "mlp.onnx"), "mlp",
                 options=ImportOptions(sample_count=4, labels=MLP_LABELS))
    return repo


@contextlib.contextmanager
def serve_grpc(engine: Engine, *, max_message_bytes: int = 1 << 20) -> Iterator[GrpcServed]:
    ready = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        state["loop"] = asyncio.get_running_loop()
        stop = asyncio.Event()
        state["stop"] = stop
        try:
            await engine.start()
            server = build_server(engine, max_message_bytes=max_message_bytes)
            state["port"] = bind(server, "127.0.0.1", 0)
            await server.start()
        except BaseException as exc:
            state["error"] = exc
            ready.set()
            raise
        ready.set()
        try:
            await stop.wait()
        finally:
            await server.stop(grace=5)
            await engine.stop(timeout=5)

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="grpc-server",
                              daemon=True)
    thread.start()
    assert ready.wait(120), "the gRPC server did not start within 120 s"
    if "error" in state:
        raise RuntimeError("the gRPC server failed to start") from state["error"]  # type: ignore[arg-type]
    loop: asyncio.AbstractEventLoop = state["loop"]  # type: ignore[assignment]
    try:
        yield GrpcServed(f"127.0.0.1:{state['port']}", engine, loop)
    finally:
        loop.call_soon_threadsafe(state["stop"].set)  # type: ignore[union-attr]
        thread.join(30)
        assert not thread.is_alive(), "the gRPC server thread did not stop"
