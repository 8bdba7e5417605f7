"""Servers under test: started pinned to a core, waited for, and stopped by PID.

Rules the harness keeps: servers bind 127.0.0.1 on a free port; every process it starts is
stopped by its own PID (SIGTERM, then SIGKILL after a grace period), children included, never
by name; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

#: The core the server under test (and raw ONNX Runtime) runs on, and the load generator's.
SERVER_CORE = 0
LOAD_CORE = 1


class ServerError(RuntimeError):
    """A server did not start, did not become ready, or answered wrongly."""


def pinned(command: Sequence[str], core: int) -> list[str]:
    """``command`` run by ``taskset`` on one core (taskset execs it: the PID stays the same)."""
    return ["taskset", "-c", str(core), *command]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc), so that forked workers are stopped too."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        for child in _children(todo.pop()):
            if child not in seen:
                seen.append(child)
                todo.append(child)
    return seen


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return False


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM ``pid``, wait up to ``grace`` seconds, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) and its live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in (pid, *_descendants(pid)):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


class Service:
    """A server process started for one measurement; a context manager that always stops it."""

    def __init__(self, name: str, command: Sequence[str], *, log: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 core: int | None = SERVER_CORE) -> None:
        self.name = name
        self.command = pinned(command, core) if core is not None else list(command)
        self.log = log
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> Service:
        """Launch the process (its output goes to the log file)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd,
            )
        return self

    @property
    def pid(self) -> int:
        """The server's PID (taskset has exec'd into it)."""
        if self.process is None:
            raise ServerError(f"{self.name} was never started")
        return self.process.pid

    def cpu_seconds(self) -> float:
        """CPU seconds the server (and any worker it forked) has used so far."""
        return cpu_seconds(self.pid)

    def check_running(self) -> None:
        """Raise with the end of the log if the process has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise ServerError(f"{self.name} exited with status {self.process.returncode}:\n"
                              f"{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        """The last ``chars`` characters of the server's output."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server and any process it forked, each by PID."""
        if self.process is None or self.process.poll() is not None:
            return
        children = _descendants(self.pid)
        stop_pid(self.pid)
        for child in children:
            stop_pid(child, grace=2.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_post(url: str, body: bytes, *, content_type: str | None = "application/json",
              timeout: float = 10.0, headers: dict[str, str] | None = None,
              context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """POST ``body`` and return (status, body); HTTP errors are returned, not raised.

    ``content_type`` None sends no ``Content-Type`` header (urllib would add a form type).
    ``context``: the TLS client context of an ``https://`` URL.
    """
    if content_type is None:
        return _post_untyped(url, body, timeout=timeout, headers=headers or {},
                             context=context)
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _post_untyped(url: str, body: bytes, *, timeout: float, headers: dict[str, str],
                  context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """POST with http.client, which adds Host and Content-Length only."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname or "127.0.0.1"
    connection = (http.client.HTTPSConnection(host, parts.port, timeout=timeout,
                                              context=context)
                  if parts.scheme == "https" else
                  http.client.HTTPConnection(host, parts.port, timeout=timeout))
    try:
        connection.request("POST", target or "/", body=body, headers=headers)
        response = connection.getresponse()
        return int(response.status), bytes(response.read())
    finally:
        connection.close()


def http_get(url: str, *, timeout: float = 5.0,
             context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """GET ``url`` and return (status, body); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def wait_until(service: Service, probe: Callable[[], bool], *, timeout: float,
               interval: float = 0.05) -> float:
    """Call ``probe`` until it returns True; return the seconds since the service started.

    Raises:
        ServerError: the process exited, or ``timeout`` passed first.
    """
    deadline = time.monotonic() + timeout
    while True:
        service.check_running()
        with contextlib.suppress(OSError, ConnectionError):
            if probe():
                return time.perf_counter() - service.started_at
        if time.monotonic() > deadline:
            raise ServerError(f"{service.name} not ready after {timeout:.0f} s:\n"
                              f"{service.log_tail()}")
        time.sleep(interval)


def post_ok(url: str, body: bytes, *, timeout: float = 2.0) -> Callable[[], bool]:
    """A probe: POSTing ``body`` to ``url`` answers 200."""
    return lambda: http_post(url, body, timeout=timeout)[0] == 200


@contextlib.contextmanager
def running(service: Service, probe: Callable[[], bool], *,
            timeout: float = 120.0) -> Iterator[Service]:
    """Start ``service``, wait for ``probe``, yield it, and stop it whatever happens."""
    with service:
        wait_until(service, probe, timeout=timeout)
        yield service
