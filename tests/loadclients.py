"""Bounded load on a real ``ferry serve`` for the stop and restart tests: keep-alive REST
clients on raw sockets and gRPC clients, each in a thread, each counting what happened to
every request it sent.

A raw socket, not an HTTP library, so that nothing is retried or hidden: the test sees
whether a sent request got its answer, whether the server announced ``Connection: close``
before closing, and which server process owns the connection (:func:`owner_pid`, from
``/proc``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from raw_http import Reader, http_request

#: What can happen to one request, as counted by the clients.
OK = "ok"  # 200 with the right answer
WRONG = "wrong"  # an answer, but not a 200 with the right predictions
LOST = "lost"  # sent, and the connection ended without an answer: must never happen
CLOSED = "closed"  # answered with Connection: close (then the client reconnects)
REFUSED = "refused"  # a new connection was refused (the port is closed: fine)
CUT = "cut"  # the connection was reset under a request (a killed process's)
#: A gRPC call the server's grpc core had received but not yet handed to ferry when the
#: stop began: grpc cancels those (grpc/grpc#41785, open); ferry never saw or ran them.
CANCELLED = "cancelled"


@dataclass
class RestLoad:
    """``clients`` keep-alive connections, each sending ``body`` to ``path`` in a loop.

    ``expected`` is the answer's JSON that counts as right. After a ``Connection: close``
    answer or a refused connect a client waits ``pause`` seconds and connects again, until
    :meth:`stop`.
    """

    port: int
    path: str
    body: bytes
    expected: object
    clients: int = 32
    pause: float = 0.05
    counts: Counter[str] = field(default_factory=Counter)
    per_client: list[Counter[str]] = field(default_factory=list)
    sockets: list[socket.socket | None] = field(default_factory=list)
    first_close: float | None = None  # when the first Connection: close answer came
    last_ok: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RestLoad:
        self.per_client = [Counter() for _ in range(self.clients)]
        self.sockets = [None] * self.clients
        for index in range(self.clients):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True,
                                      name=f"rest-client-{index}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self._threads), "a load client hung"

    def wait_for(self, outcome: str, count: int, timeout: float = 30.0) -> None:
        """Wait (bounded) until ``count`` requests ended as ``outcome``."""
        deadline = time.monotonic() + timeout
        while self.counts[outcome] < count:
            assert time.monotonic() < deadline, f"only {self.counts} after {timeout} s"
            time.sleep(0.02)

    def _count(self, index: int, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
            self.per_client[index][outcome] += 1
            now = time.monotonic()
            if outcome == OK:
                self.last_ok = now
            elif outcome == CLOSED and self.first_close is None:
                self.first_close = now

    def _run(self, index: int) -> None:
        request = http_request(self.path, self.body)
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            except ConnectionRefusedError:
                self._count(index, REFUSED)
                self._stop.wait(self.pause)
                continue
            self.sockets[index] = sock
            with sock:
                self._converse(index, sock, Reader(sock), request)
            self.sockets[index] = None
            self._stop.wait(self.pause)

    def _converse(self, index: int, sock: socket.socket, reader: Reader, request: bytes) -> None:
        """Send requests one after the other on ``sock`` until it ends (or the load stops)."""
        while not self._stop.is_set():
            try:
                sock.sendall(request)
            except OSError:  # closed under us before the request left: nothing was sent
                self._count(index, CUT)
                return
            try:
                status, headers, body = reader.answer()
            except ConnectionResetError:
                self._count(index, CUT)
                return
            except (AssertionError, OSError):  # closed (or timed out) with no answer
                self._count(index, LOST)
                return
            right = status == 200 and orjson.loads(body) == self.expected
            self._count(index, OK if right else WRONG)
            if headers.get("connection") == "close":
                self._count(index, CLOSED)
                return


@dataclass
class GrpcLoad:
    """``clients`` gRPC channels, each calling ``predict`` in a loop until :meth:`stop`."""

    target: str
    model: str
    rows: list[list[float]]
    expected: list[list[float]]
    clients: int = 4
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> GrpcLoad:
        for index in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True, name=f"grpc-client-{index}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self._threads), "a gRPC load client hung"

    def _run(self) -> None:
        from ferry.client import GrpcClient
        from ferry.errors import FerryError, UnavailableError

        with GrpcClient(self.target, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    scores = client.predict(self.model, self.rows)
                except UnavailableError as exc:
                    # A call the server never took: the port closed (connect refused) or
                    # the server's GOAWAY came before the call was sent.
                    refused = "connect" in str(exc).lower() or "goaway" in str(exc).lower()
                    self._note(REFUSED if refused else LOST, str(exc))
                    self._stop.wait(0.05)
                    continue
                except FerryError as exc:
                    self._note(CANCELLED if str(exc) == "CANCELLED" else WRONG, str(exc))
                    continue
                right = np.allclose(np.asarray(scores, np.float64), self.expected,
                                    rtol=1e-6, atol=0)
                self._note(OK if right else WRONG, "" if right else repr(scores))

    def _note(self, outcome: str, error: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
            if error and len(self.errors) < 20:
                self.errors.append(f"{outcome}: {error}")


def owner_pid(sock: socket.socket, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server side of ``sock`` (a loopback connection), or None.

    Reads ``/proc/net/tcp`` for the inode of the server's socket (local = the server's
    address, remote = this socket's), then each process's open files for it.
    """
    client_port = sock.getsockname()[1]
    server_port = sock.getpeername()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, remote = parts[1], parts[2]
        if int(local.split(":")[1], 16) == server_port and \
                int(remote.split(":")[1], 16) == client_port:
            inode = parts[9]
            break
    if inode is None:
        return None
    link = f"socket:[{inode}]"
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if fd.readlink().as_posix() == link:
                        return pid
    return None
