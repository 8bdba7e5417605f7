"""A real REST server for tests: the real Engine over a repository of real ONNX models,
served by uvicorn on a free 127.0.0.1 port in a thread, stopped when the test is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

import protocol_models
from builders import mlp_onnx
from ferry.engine import Engine
from ferry.formats import ImportOptions, import_model
from ferry.protocols.rest.app import create_app
from ferry.protocols.rest.http11 import http_protocol
from ferry.protocols.rest.limits import HttpLimits
from ferry.repository import Repository

#: The small body limit the test server runs with, so "huge body" needs no huge upload.
MAX_BODY = 1 << 20
MLP_LABELS = ["cat", "dog", "eel"]


@dataclass
class Served:
    """A running server: its base URL, engine and loop (to call the engine on its loop)."""

    url: str
    engine: Engine
    loop: asyncio.AbstractEventLoop
    repo: Repository
    server: uvicorn.Server | None = None

    def call(self, coro, timeout: float = 60.0):
        """Run a coroutine on the server's loop (e.g. engine.stop()) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def build_repository(root: Path) -> Repository:
    """alltypes, half, pair (tests/protocol_models.py) and mlp (3 labelled classes)."""
    repo = Repository(root / "repo")
    protocol_models.import_all(repo, root / "models")
    import_model(repo, mlp_onnx(root / "models" / "mlp.onnx"), "mlp",
                 options=ImportOptions(sample_count=4, labels=MLP_LABELS))
    return repo


def make_engine(repo: Repository) -> Engine:
    """The real engine over ``repo``, serving every model in it."""
    return Engine(repo)


def _protocol(ctx, lane: bool | str, limits: HttpLimits | None):
    if isinstance(lane, str):
        return lane  # stock uvicorn: "httptools" or "h11"
    return http_protocol(ctx, limits) if lane else "httptools"


@contextlib.contextmanager
def serve(engine: Engine, repo: Repository, *, max_body_bytes: int = MAX_BODY,
          start_engine: bool = True, lane: bool | str = True,
          keep_alive: float = 5.0, limits: HttpLimits | None = None) -> Iterator[Served]:
    """Run ``create_app(engine)`` under uvicorn in a thread; start and stop the engine there.

    ``lane``: True serves as ``ferry serve`` does (http11.py: ferry's HTTP/1.1 protocol, with
    ``limits`` when given); False, ``"httptools"`` or ``"h11"``: stock uvicorn with that
    parser, through the ASGI app alone (the HotRoutes middleware): the reference.
    """
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP, and without it every answer (headers, then body) waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(engine, max_body_bytes=max_body_bytes)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                            http=_protocol(app.state.rest_context, lane, limits),
                            timeout_keep_alive=keep_alive)
    server = uvicorn.Server(config)
    ready = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        state["loop"] = asyncio.get_running_loop()
        try:
            if start_engine:
                await engine.start()
        except BaseException as exc:
            state["error"] = exc
            ready.set()
            raise
        ready.set()
        try:
            await server.serve(sockets=[sock])
        finally:
            await engine.stop(timeout=10.0)

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="rest-server",
                              daemon=True)
    thread.start()
    assert ready.wait(120), "the engine did not start within 120 s"
    if "error" in state:
        raise RuntimeError("the engine failed to start") from state["error"]  # type: ignore[arg-type]
    for _ in range(500):  # uvicorn sets started once it listens
        if server.started:
            break
        threading.Event().wait(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", engine, state["loop"], repo,  # type: ignore[arg-type]
                     server)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "the server thread did not stop"
