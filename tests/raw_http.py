"""HTTP/1.1 over raw sockets, for the tests of ferry's own protocol and uvicorn's lane: what
a real client library would hide (pipelining, split packets, odd heads) must be sent as bytes.
The model is the protocol tests' ``mlp`` (4 inputs -> 3 scores, tests/rest_server.py).
"""

from __future__ import annotations

import socket

import numpy as np
import onnxruntime as ort
import orjson

from ferry.repository import Repository
from rest_server import Served


def expected(repo: Repository, rows: np.ndarray) -> np.ndarray:
    """What raw ONNX Runtime answers for ``rows`` on the ``mlp`` model."""
    path = repo.root / "mlp" / "1" / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": rows})[0]


def v2_body(rows: np.ndarray, **extra: object) -> bytes:
    """A V2 JSON infer body for ``rows`` of the ``mlp`` model."""
    return orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": list(rows.shape),
                                     "data": rows.ravel().tolist()}], **extra})


def http_request(path: str, body: bytes, *, extra: str = "", version: str = "1.1") -> bytes:
    """A POST of a JSON ``body``: the bytes a plain client sends."""
    head = (f"POST {path} HTTP/{version}\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n")
    return head.encode("ascii") + body


class Reader:
    """Reads HTTP/1.1 answers (Content-Length framed) off a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers (lower-case names) and body."""
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"connection closed mid-answer: {self.buffer!r}"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "connection closed mid-body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closed the connection (nothing more to read)."""
        self.sock.settimeout(timeout)
        return not self._fill() and not self.buffer


def connect(served: Served) -> socket.socket:
    """A raw TCP connection to the server."""
    host, port = served.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def scores(body: bytes) -> np.ndarray:
    """The first output of a V2 JSON answer, as an array of its shape."""
    out = orjson.loads(body)["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])
