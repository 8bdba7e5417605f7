"""ferry's own HTTP/1.1 protocol (express.py) over raw sockets, against uvicorn's as the reference.

The express protocol reads only plain inference requests itself and hands anything else to
uvicorn's protocol. These tests send what a real client library would never send on purpose
(split packets, odd heads, pipelined bursts, idle connections) and check that every answer is
the one uvicorn's own protocol gives, and that the connection keeps serving afterwards.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest

import ferry.protocols.rest.express as express
import ferry.protocols.rest.hot as hot
from ferry.engine import Engine
from ferry.repository import Repository
from raw_http import Reader, connect, expected, http_request, scores, v2_body
from rest_server import Served, serve

_rng = np.random.default_rng(11)
PATH = "/v2/models/mlp/infer"


@pytest.fixture(scope="module")
def fast(rest_repo: Repository) -> Iterator[Served]:
    """What ``ferry serve`` runs, with a short keep-alive timeout (1 s) for the idle test."""
    with serve(Engine(rest_repo), rest_repo, keep_alive=1.0) as served:
        yield served


@pytest.fixture(scope="module")
def reference(rest_repo: Repository) -> Iterator[Served]:
    """uvicorn's protocol with the lane: the behaviour the express protocol must keep."""
    with serve(Engine(rest_repo), rest_repo, lane="uvicorn") as served:
        yield served


def _rows(n: int = 1) -> np.ndarray:
    return _rng.standard_normal((n, 4)).astype(np.float32)


def _one_answer(served: Served, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(served) as sock:
        sock.sendall(raw)
        return Reader(sock).answer()


def test_a_request_split_into_many_packets_is_answered(fast: Served) -> None:
    rows = _rows(2)
    raw = http_request(PATH, v2_body(rows))
    head_end = raw.index(b"\r\n\r\n")
    cuts = [5, 17, head_end + 1, head_end + 3, head_end + 10, len(raw) - 1]
    with connect(fast) as sock:
        reader = Reader(sock)
        for _ in range(2):  # the second time on the same connection, after a first answer
            start = 0
            for cut in [*cuts, len(raw)]:
                sock.sendall(raw[start:cut])
                start = cut
                time.sleep(0.01)
            status, _, body = reader.answer()
            assert status == 200
            np.testing.assert_allclose(scores(body), expected(fast.repo, rows), rtol=1e-5,
                                       atol=1e-6)


# Heads the express protocol must not read itself: each is handed to uvicorn, whose answer
# must be exactly what uvicorn's own protocol answers.
_BODY = v2_body(np.ones((1, 4), np.float32))
_LEN = str(len(_BODY)).encode()
_CHUNKED = (b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
            b"\r\nTransfer-Encoding: chunked\r\n\r\n" + f"{len(_BODY):x}".encode() + b"\r\n"
            + _BODY + b"\r\n0\r\n\r\n")
ODD_HEADS = {
    "chunked body": _CHUNKED,
    "bare LF line ends": (b"POST /v2/models/mlp/infer HTTP/1.1\nHost: t\nContent-Type: "
                          b"application/json\nContent-Length: " + _LEN + b"\n\n" + _BODY),
    "folded header": (b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n 2\r\n"
                      b"Content-Type: application/json\r\nContent-Length: " + _LEN
                      + b"\r\n\r\n" + _BODY),
    "space before colon": (b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: t\r\nContent-Type :"
                           b" application/json\r\nContent-Length: " + _LEN + b"\r\n\r\n"
                           + _BODY),
    "two content lengths": (b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: t\r\nContent-Type: "
                            b"application/json\r\nContent-Length: " + _LEN
                            + b"\r\nContent-Length: " + _LEN + b"\r\n\r\n" + _BODY),
    "HTTP/1.0": http_request(PATH, _BODY, version="1.0"),
    "connection close": http_request(PATH, _BODY, extra="Connection: close\r\n"),
    "absolute-form target": http_request("http://t/v2/models/mlp/infer", _BODY),
    "query string": http_request(PATH + "?a=1", _BODY),
    "percent-encoded model": http_request("/v2/models/ml%70/infer", _BODY),
    "text/plain": http_request(PATH, _BODY).replace(b"application/json", b"text/plain"),
    "gzip encoding": http_request(PATH, _BODY, extra="Content-Encoding: gzip\r\n"),
    "empty body": http_request(PATH, b""),
    "unknown model": http_request("/v2/models/nope/infer", _BODY),
    "a GET": b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n",
    "a NUL in a header": http_request(PATH, _BODY, extra="X-A: a\x00b\r\n"),
}


@pytest.mark.parametrize("name", sorted(ODD_HEADS))
def test_odd_requests_are_answered_as_uvicorn_answers_them(fast: Served, reference: Served,
                                                           name: str) -> None:
    raw = ODD_HEADS[name]
    got = _one_answer(fast, raw)
    want = _one_answer(reference, raw)
    assert got[0] == want[0], (name, got, want)
    if got[0] == 200 and "outputs" in orjson.loads(want[2]):
        np.testing.assert_allclose(scores(got[2]), scores(want[2]), rtol=1e-6)
    elif got[0] >= 400:
        assert got[2] == want[2] or b"error" in got[2], (got[2], want[2])


def test_a_connection_handed_to_uvicorn_keeps_serving_inference(fast: Served) -> None:
    with connect(fast) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.answer()[0] == 200
        for n in (1, 3, 2):
            rows = _rows(n)
            sock.sendall(http_request(PATH, v2_body(rows)))
            status, _, body = reader.answer()
            assert status == 200
            np.testing.assert_allclose(scores(body), expected(fast.repo, rows), rtol=1e-5,
                                       atol=1e-6)


def test_request_ids_are_echoed_and_a_bad_one_is_replaced_each_time(fast: Served) -> None:
    body = v2_body(_rows())
    with connect(fast) as sock:
        reader = Reader(sock)
        sock.sendall(http_request(PATH, body, extra="X-Request-ID: mine-1\r\n"))
        assert reader.answer()[1]["x-request-id"] == "mine-1"
        fresh = set()
        for _ in range(3):  # the same unusable id, the same head: a new id every time
            sock.sendall(http_request(PATH, body, extra="X-Request-ID: " + "a" * 200 + "\r\n"))
            status, headers, _ = reader.answer()
            assert status == 200
            fresh.add(headers["x-request-id"])
        assert len(fresh) == 3 and all(len(i) == 32 for i in fresh)


def test_a_pipelining_client_gets_every_answer_in_order(fast: Served) -> None:
    """1,500 requests sent in one stream while the answers are read: more than the socket
    buffers hold, so the server's write back-pressure and read pausing both come into play."""
    count = 1500
    rows = _rows()
    stream = b"".join(http_request(PATH, v2_body(rows, id=f"r{i}")) for i in range(count))
    with connect(fast) as sock:
        sender = threading.Thread(target=sock.sendall, args=(stream,))
        sender.start()
        reader = Reader(sock)
        ids = []
        for _ in range(count):
            status, _, body = reader.answer()
            assert status == 200
            ids.append(orjson.loads(body)["id"])
        sender.join(30)
    assert ids == [f"r{i}" for i in range(count)]


def test_distinct_heads_do_not_grow_the_head_cache_without_bound(fast: Served) -> None:
    body = v2_body(_rows())
    with connect(fast) as sock:
        reader = Reader(sock)
        for i in range(express._HEADS_MAX + 50):
            sock.sendall(http_request(PATH, body, extra=f"X-Request-ID: id-{i}\r\n"))
            assert reader.answer()[1]["x-request-id"] == f"id-{i}"
    assert len(express._HEADS) <= express._HEADS_MAX


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(fast: Served) -> None:
    body = v2_body(_rows())
    with connect(fast) as sock:
        reader = Reader(sock)
        for _ in range(4):  # active for 2 s, past the 1 s timeout: stays open
            sock.sendall(http_request(PATH, body))
            assert reader.answer()[0] == 200
            time.sleep(0.5)
        started = time.monotonic()
        assert reader.closed(timeout=5)
        assert time.monotonic() - started < 3


def test_a_stopping_server_finishes_the_answers_in_flight_then_closes(
        rest_repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection holds one request in flight (an answer that waits for the test)."""
    gate = threading.Event()

    async def held(*args: object) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 30)
        return 200, [(b"content-type", b"application/json"), (b"content-length", b"2")], b"{}"

    monkeypatch.setattr(hot, "answer", held)
    with serve(Engine(rest_repo), rest_repo) as served, connect(served) as sock, \
            connect(served) as idle, connect(served) as partial:
        sock.sendall(http_request(PATH, v2_body(_rows())))
        raw = http_request(PATH, v2_body(_rows()))
        partial.sendall(raw[:-10])  # its body is still arriving when the stop begins
        time.sleep(0.3)
        assert served.server is not None
        served.server.should_exit = True
        assert Reader(idle).closed(timeout=5)  # an idle connection closes at once
        partial.sendall(raw[-10:])
        time.sleep(0.3)
        gate.set()
        for conn in (sock, partial):
            reader = Reader(conn)
            status, headers, body = reader.answer()
            assert (status, body, headers["connection"]) == (200, b"{}", "close")
            assert reader.closed(timeout=5)


def test_http_clients_work_unchanged(fast: Served) -> None:
    rows = _rows(3)
    with httpx.Client(base_url=fast.url) as client:
        for _ in range(3):
            response = client.post(PATH, content=v2_body(rows),
                                   headers={"content-type": "application/json"})
            assert response.status_code == 200
            np.testing.assert_allclose(scores(response.content), expected(fast.repo, rows),
                                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head", [
    b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 5\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: Application/JSON; charset=utf-8\r\n"
    b"content-length:5\r\nConnection: keep-alive\r\n",
])
def test_plain_heads_are_read(head: bytes) -> None:
    plain = express._read_head(head)
    assert plain is not None and plain.length == 5


@pytest.mark.parametrize("head", [
    b"GET /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\n",
    b"POST /predict HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 5\r\n",
    b"POST /metrics HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\n",
    b"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\n",
    b"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 0\r\n",
    b"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: +5\r\n",
    b"POST /predict HTTP/1.1\r\nContent-Length: 5\r\n",
    b"POST /predict HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\n",
    b"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\n"
    b"Expect: 100-continue\r\n",
    b"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\n"
    b"Upgrade: h2c\r\n",
    b"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\n"
    b"Connection: close\r\n",
    b"POST /predict  HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\n",
    b"POST /pre dict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\n",
    b"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\nX\r\n",
    b"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\r\n",
])
def test_heads_that_are_not_plain_are_left_to_uvicorn(head: bytes) -> None:
    assert express._read_head(head) is None
