"""Start ``ferry serve`` as a user would (a subprocess on free ports) and stop it by PID."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    grpc: str
    log: Path

    def output(self) -> str:
        return self.log.read_text()


@contextmanager
def ferry_serve(repo: Path | None, *args: str, env: dict[str, str] | None = None,
                timeout: float = 60.0, tls: ssl.SSLContext | None = None,
                cwd: Path | None = None, log_format: str | None = "text") -> Iterator[Server]:
    """Run ``ferry serve repo args`` until ready (``/v2/health/ready`` is 200); stop it after.

    With ``tls`` (a client context trusting the server's CA, with a client certificate for
    mTLS) the server is reached over ``https``. ``repo`` None: the repository comes from the
    settings (``--config``), read with ``cwd`` as the working directory.
    """
    http_port, grpc_port = free_port(), free_port()
    log = (repo.parent if repo is not None else cast(Path, cwd)) / f"serve-{http_port}.log"
    where = [str(repo)] if repo is not None else []
    style = ["--log-format", log_format] if log_format else []
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ferry", "serve", *where, "--http-port", str(http_port),
             "--grpc-port", str(grpc_port), *style, *args],
            stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=cwd or ROOT,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
    scheme = "https" if tls is not None else "http"
    server = Server(process, f"{scheme}://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"ferry serve exited with {process.returncode}:\n"
                                     f"{server.output()}")
            try:
                ready = httpx.get(f"{server.url}/v2/health/ready", timeout=1,
                                  verify=tls if tls is not None else True).status_code == 200
            except httpx.TransportError:
                ready = False
            # With --workers, one worker may answer before the others listen: the banner
            # is printed once all of them are ready.
            if ready and "ferry is serving" in server.output():
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"ferry serve not ready in {timeout} s:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
