"""ferry's HTTP/1.1 protocol (http11.py) over raw sockets: framing, bounds, timeouts, memory.

llhttp reads every request of the REST port; these tests send what a real client library
would never send on purpose (pipelined streams cut at odd offsets, requests hidden in
bodies, heads and targets past the limits, heads and bodies that never finish, clients that
never read) and check that each request is answered once, in order, as itself; that a
refused request is answered after the valid ones before it and then closes the connection;
and that nothing a client sends makes the server hold more than its bounds. The memory and
log checks run against a real ``ferry serve`` process (its RSS, its stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

import ferry.protocols.rest.hot as hot
from ferry.engine import Engine, ModelConfig
from ferry.protocols.rest.limits import HttpLimits
from ferry.repository import Repository
from raw_http import Reader, connect, expected, http_request, scores, v2_body
from rest_server import MAX_BODY, Served, serve
from serving import ROOT, free_port

_rng = np.random.default_rng(23)
PATH = "/v2/models/mlp/infer"
SMUGGLED = b"GET /v2/health/ready HTTP/1.1\r\nHost: probe\r\nX-Request-ID: smuggled\r\n\r\n"
UNLOAD = (b"POST /v2/repository/models/mlp/unload HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
          b"X-Request-ID: unload\r\n\r\n")
READY = b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n"
LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: %s\r\n\r\n"
#: The timeouts of the ``strict`` server (seconds), and the slack a check allows past them.
SHORT = 0.5
LINGER = 1.0
SLACK = 1.0


@pytest.fixture(scope="module")
def fast(rest_repo: Repository) -> Iterator[Served]:
    """What ``ferry serve`` runs (default limits), with a 1 s keep-alive timeout."""
    with serve(Engine(rest_repo), rest_repo, keep_alive=1.0) as served:
        yield served


@pytest.fixture(scope="module")
def threaded(rest_repo: Repository) -> Iterator[Served]:
    """Default limits over a model that always waits for a thread: answers are in flight
    while the requests behind them are read."""
    engine = Engine(rest_repo, defaults=ModelConfig(inline_below_ms=0.0))
    with serve(engine, rest_repo, keep_alive=5.0) as served:
        yield served


@pytest.fixture(scope="module")
def strict(rest_repo: Repository) -> Iterator[Served]:
    """The same with short head, body and write timeouts and linger, for the timeout tests."""
    limits = HttpLimits(head_timeout=SHORT, body_timeout=SHORT, write_timeout=1.0,
                        linger=LINGER)
    with serve(Engine(rest_repo), rest_repo, keep_alive=5.0, limits=limits) as served:
        yield served


def _rows(n: int = 1) -> np.ndarray:
    return _rng.standard_normal((n, 4)).astype(np.float32)


def _infer(rows: np.ndarray, rid: str, path: str = PATH) -> bytes:
    return http_request(path, v2_body(rows), extra=f"X-Request-ID: {rid}\r\n")


def _head_length(raw: bytes) -> int:
    return raw.index(b"\r\n\r\n") + 4


def _closed(reader: Reader, timeout: float = 5.0) -> bool:
    """True when the server closed the connection (a reset counts as closed too)."""
    try:
        return reader.closed(timeout)
    except ConnectionResetError:
        return not reader.buffer


def _assert_scores(served: Served, answer: tuple[int, dict[str, str], bytes],
                   rows: np.ndarray, rid: str) -> None:
    status, headers, body = answer
    assert status == 200, (rid, answer)
    assert headers["x-request-id"] == rid
    np.testing.assert_allclose(scores(body), expected(served.repo, rows), rtol=1e-5, atol=1e-6)


def _sendall_quietly(sock: socket.socket, data: bytes, errors: list[BaseException]) -> None:
    """``sendall`` for a sender thread: a server that closed the connection ends it."""
    try:
        sock.sendall(data)
    except OSError as exc:
        errors.append(exc)


# ---------------------------------------------------------------------- a. framing


def _hiding(inner: bytes, offset: int, rid: str) -> bytes:
    """A V2 infer request whose body (not JSON) ends with ``inner``, which starts ``offset``
    bytes from the request's first byte (what follows the request follows ``inner`` too)."""
    for digits in range(1, 6):  # the head's length depends on the body's, through its digits
        head = (f"POST {PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                f"Content-Length: {'0' * digits}\r\nX-Request-ID: {rid}\r\n\r\n")
        at = offset - len(head)
        if len(str(at + len(inner))) == digits:
            break
    assert at > 10, "the offset is not inside the body"
    body = b"not json: " + b"x" * (at - 10) + inner
    head = head.replace("0" * digits, str(len(body)))
    raw = head.encode("ascii") + body
    assert raw.index(inner) == offset
    return raw


@pytest.mark.parametrize("kind", ["fast", "threaded"])
def test_a_stream_cut_off_request_boundaries_answers_each_request_as_itself(
        request: pytest.FixtureRequest, kind: str) -> None:
    """The issue's repro: A and the first 10 body bytes of B, a pause, then the rest of B and
    C. C's body (not JSON) holds a request at the offset where a reading that lost track of
    the first write (offsets kept from before it, shifted by len(A)) would look for the next
    request; D follows, so an answer to the hidden request would come before D's."""
    fast: Served = request.getfixturevalue(kind)
    rows_a, rows_b = _rows(8), _rows(2)
    a, b = _infer(rows_a, "a"), _infer(rows_b, "b")
    c = _hiding(SMUGGLED, len(a), "c")
    d = LIVE % b"d"
    first = a + b[:_head_length(b) + 10]
    second = b[_head_length(b) + 10:] + c + d
    with connect(fast) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)
        reader = Reader(sock)
        sock.sendall(first)
        time.sleep(0.3)
        sock.sendall(second)
        answers = [reader.answer() for _ in range(4)]
        ids = [headers["x-request-id"] for _, headers, _ in answers]
        assert ids == ["a", "b", "c", "d"], answers
        _assert_scores(fast, answers[0], rows_a, "a")
        _assert_scores(fast, answers[1], rows_b, "b")
        assert answers[2][0] == 400 and "json" in orjson.loads(answers[2][2])["error"].lower()
        assert answers[3][0] == 200 and orjson.loads(answers[3][2]) == {"live": True}
        assert reader.buffer == b""  # nothing after D's answer: no answer to "smuggled"
        sock.sendall(LIVE % b"e")  # and the connection goes on as usual
        assert reader.answer()[1]["x-request-id"] == "e"


@pytest.mark.parametrize("piece", [1000, 1500, 4000])
def test_300_pipelined_requests_written_in_pieces_are_answered_in_order(
        fast: Served, piece: int) -> None:
    batches = [_rows(1 + i % 3) for i in range(300)]
    stream = b"".join(_infer(rows, f"p{i}") for i, rows in enumerate(batches))
    want = expected(fast.repo, np.concatenate(batches))
    errors: list[BaseException] = []

    def send(sock: socket.socket) -> None:
        try:
            for start in range(0, len(stream), piece):
                sock.sendall(stream[start:start + piece])
                time.sleep(0.002)  # each piece its own segment, read on its own
        except OSError as exc:
            errors.append(exc)

    with connect(fast) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(20)
        sender = threading.Thread(target=send, args=(sock,))
        sender.start()
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(len(batches))]
        sender.join(20)
    assert not errors
    assert [h["x-request-id"] for _, h, _ in answers] == [f"p{i}" for i in range(300)]
    row = 0
    for (status, _, body), rows in zip(answers, batches, strict=True):
        assert status == 200
        np.testing.assert_allclose(scores(body), want[row:row + len(rows)], rtol=1e-5,
                                   atol=1e-6)
        row += len(rows)


def test_a_request_split_into_many_packets_is_answered(fast: Served) -> None:
    rows = _rows(2)
    raw = http_request(PATH, v2_body(rows))
    head_end = raw.index(b"\r\n\r\n")
    cuts = [5, 17, head_end + 1, head_end + 3, head_end + 10, len(raw) - 1]
    with connect(fast) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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


# ---------------------------------------------------------------------- b. hidden requests


def test_a_request_inside_a_body_is_never_executed(fast: Served) -> None:
    """An unload request as a Content-Length body; hidden as in the issue's repro (a body
    at the offset a reading that lost track of a write would take for the next request);
    and as a chunk of a chunked body: all are data, the model stays ready."""
    rows = [_rows(8), _rows(2)]
    r1 = http_request(PATH, UNLOAD, extra="X-Request-ID: r1\r\n")
    r2, r3 = _infer(rows[0], "r2"), _infer(rows[1], "r3")
    r4 = _hiding(UNLOAD, len(r1) + len(r2), "r4")
    r5 = (f"POST {PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
          "Transfer-Encoding: chunked\r\nX-Request-ID: r5\r\n\r\n").encode("ascii")
    r5 += b"%x\r\n%s\r\n0\r\n\r\n" % (len(UNLOAD), UNLOAD)
    r6 = b"GET /v2/models/mlp/ready HTTP/1.1\r\nHost: t\r\nX-Request-ID: r6\r\n\r\n"
    cut = _head_length(r3) + 10
    with connect(fast) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)
        reader = Reader(sock)
        sock.sendall(r1 + r2 + r3[:cut])
        time.sleep(0.3)
        sock.sendall(r3[cut:] + r4 + r5 + r6)
        answers = [reader.answer() for _ in range(6)]
        assert reader.buffer == b""
    assert [(s, h["x-request-id"]) for s, h, _ in answers] == [
        (400, "r1"), (200, "r2"), (200, "r3"), (400, "r4"), (400, "r5"), (200, "r6")], answers
    _assert_scores(fast, answers[1], rows[0], "r2")
    _assert_scores(fast, answers[2], rows[1], "r3")
    assert orjson.loads(answers[5][2]) == {"name": "mlp", "ready": True}
    with httpx.Client(base_url=fast.url) as client:
        assert client.get("/v2/models/mlp/ready").status_code == 200
        response = client.post(PATH, content=v2_body(_rows()),
                               headers={"content-type": "application/json"})
        assert response.status_code == 200


# ---------------------------------------------------------------------- c. refusals in order

_REFUSALS = {
    "malformed": (b"BROKEN\x01REQUEST / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    "body over the limit": (f"POST {PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: "
                            f"application/json\r\nContent-Length: {MAX_BODY + 1}\r\n"
                            "X-Request-ID: big\r\n\r\n".encode("ascii"), 413),
    "head over the limit": (b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Pad: "
                            + b"a" * (20 << 10) + b"\r\n\r\n", 431),
    "chunked body over the limit": (f"POST {PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: "
                                    "application/json\r\nTransfer-Encoding: chunked\r\n"
                                    "X-Request-ID: big\r\n\r\n".encode("ascii")
                                    + b"%x\r\n%s\r\n" % (MAX_BODY, b"x" * MAX_BODY) * 2, 413),
}


@pytest.mark.parametrize("kind", ["fast", "threaded"])
@pytest.mark.parametrize("name", sorted(_REFUSALS))
def test_a_refused_request_is_answered_after_the_valid_ones_then_the_connection_closes(
        request: pytest.FixtureRequest, kind: str, name: str) -> None:
    fast: Served = request.getfixturevalue(kind)
    bad, status = _REFUSALS[name]
    rows = [_rows(1), _rows(3)]
    stream = (_infer(rows[0], "v1") + LIVE % b"v2" + _infer(rows[1], "v3") + bad
              + LIVE % b"after")  # never answered: nothing is read past a refusal
    errors: list[BaseException] = []  # a refused body may still be arriving: no matter
    with connect(fast) as sock:
        sock.settimeout(10)
        reader = Reader(sock)
        sender = threading.Thread(target=_sendall_quietly, args=(sock, stream, errors))
        sender.start()
        answers = [reader.answer() for _ in range(4)]
        sender.join(10)
        assert [a[0] for a in answers] == [200, 200, 200, status], answers
        _assert_scores(fast, answers[0], rows[0], "v1")
        assert answers[1][1]["x-request-id"] == "v2"
        _assert_scores(fast, answers[2], rows[1], "v3")
        refused = answers[3]
        assert refused[1]["connection"] == "close" and "error" in orjson.loads(refused[2])
        assert _closed(reader)


# ---------------------------------------------------------------------- d. limits


def _refusal_case(name: str) -> bytes:
    body = v2_body(np.ones((1, 4), np.float32))
    if name == "head over 16 KiB in one write":
        return http_request(PATH, body, extra="X-Pad: " + "a" * (17 << 10) + "\r\n")
    if name == "101 header fields":
        return http_request(PATH, body, extra="".join(f"X-H{i}: {i}\r\n" for i in range(101)))
    if name == "9 KiB target":
        return http_request(f"/v2/models/{'m' * (9 << 10)}/infer", body)
    if name == "19-digit Content-Length":
        return (f"POST {PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                "Content-Length: 9999999999999999999\r\n\r\n").encode("ascii") + body
    if name == "no Host":
        return http_request(PATH, body).replace(b"Host: t\r\n", b"")
    if name == "two Host headers":
        return http_request(PATH, body).replace(b"Host: t\r\n", b"Host: t\r\nHost: u\r\n")
    raise AssertionError(name)


@pytest.mark.parametrize(("name", "status"), [
    ("head over 16 KiB in one write", 431),
    ("101 header fields", 431),
    ("9 KiB target", 414),
    ("19-digit Content-Length", 413),
    ("no Host", 400),
    ("two Host headers", 400),
])
def test_a_request_past_a_limit_is_refused_and_the_connection_closed(
        fast: Served, name: str, status: int) -> None:
    with connect(fast) as sock:
        sock.settimeout(5)
        reader = Reader(sock)
        sock.sendall(_refusal_case(name))
        got, headers, body = reader.answer()
        assert got == status, (name, got, body)
        assert headers["connection"] == "close" and "error" in orjson.loads(body)
        assert _closed(reader)


def test_http_1_0_needs_no_host(fast: Served) -> None:
    rows = _rows(2)
    raw = http_request(PATH, v2_body(rows), version="1.0").replace(b"Host: t\r\n", b"")
    with connect(fast) as sock:
        sock.settimeout(5)
        sock.sendall(raw)
        status, _, body = Reader(sock).answer()
    assert status == 200
    np.testing.assert_allclose(scores(body), expected(fast.repo, rows), rtol=1e-5, atol=1e-6)


def test_a_one_mebibyte_header_sent_in_pieces_is_refused_early(fast: Served) -> None:
    """Refused once the head passes 16 KiB, not after the whole MiB: the 431 comes while the
    client is still sending, and the server's side of the connection closes (FIN)."""
    sent = [0]

    def send(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the server may close before it is all sent
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Big: ")
            piece = b"a" * (16 << 10)
            for _ in range(64):  # 1 MiB in all, over 0.3 s at least
                sock.sendall(piece)
                sent[0] += len(piece)
                time.sleep(0.005)

    with connect(fast) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(5)
        reader = Reader(sock)
        started = time.monotonic()
        sender = threading.Thread(target=send, args=(sock,))
        sender.start()
        status, headers, _ = reader.answer()
        took, at = time.monotonic() - started, sent[0]
        assert status == 431 and headers["connection"] == "close"
        assert took < 1.0 and at < 1 << 19, (took, at)  # refused with under half of it sent
        assert _closed(reader)
        sender.join(10)


def test_a_refused_upload_is_read_and_dropped_while_lingering_then_closed(
        strict: Served) -> None:
    """A client refused mid-upload (413 from its Content-Length) is still sending. The server
    half-closes after the refusal (FIN) and reads and drops what still arrives for
    ``linger`` (1 s), so the client's sends are not reset meanwhile (a reset can destroy
    the refusal before it is read); after that the connection closes."""
    head = (f"POST {PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {64 * MAX_BODY}\r\nX-Request-ID: upload\r\n\r\n").encode("ascii")
    failed: list[tuple[float, OSError]] = []

    def upload(sock: socket.socket) -> None:
        piece = b"0" * (16 << 10)
        deadline = time.monotonic() + LINGER + 3 * SLACK
        try:
            sock.sendall(head)
            while time.monotonic() < deadline:
                sock.sendall(piece)
                time.sleep(0.01)
        except OSError as exc:
            failed.append((time.monotonic(), exc))

    with connect(strict) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(5)
        reader = Reader(sock)
        sender = threading.Thread(target=upload, args=(sock,))
        sender.start()
        status, headers, _ = reader.answer()
        refused = time.monotonic()
        assert (status, headers["x-request-id"], headers["connection"]) == (
            413, "upload", "close")
        assert _closed(reader)  # the server's FIN
        sender.join(LINGER + 4 * SLACK)
    assert failed, "the connection was never closed"
    when, error = failed[0]
    assert 0.8 * LINGER <= when - refused < LINGER + SLACK, (
        f"the upload failed {when - refused:.3f} s after the 413 ({error!r}); the server "
        f"should read and drop it for {LINGER} s, then close")


def test_a_head_ending_in_lf_crlf_is_answered_not_left_waiting(fast: Served) -> None:
    raw = b"GET /v2/health/live HTTP/1.1\r\nHost: t\nX-Request-ID: lf\n\r\n"
    with connect(fast) as sock:
        sock.settimeout(1.0)
        reader = Reader(sock)
        started = time.monotonic()
        sock.sendall(raw)
        try:
            status, _, body = reader.answer()
        except TimeoutError:
            pytest.fail("no answer within 1 s to a head ending in LF CRLF")
        assert time.monotonic() - started < 1.0
        assert status == 200 or 400 <= status < 500, (status, body)
        if status == 200:
            assert orjson.loads(body) == {"live": True}


# ---------------------------------------------------------------------- e. timeouts


def test_a_head_that_never_completes_gets_a_408_and_the_connection_closes(
        strict: Served) -> None:
    """The head keeps arriving (a field every 0.1 s): it is the whole head that is timed."""
    with connect(strict) as sock:
        sock.settimeout(5)
        reader = Reader(sock)
        started = time.monotonic()
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n")
        i = 0
        while not select.select([sock], [], [], 0.1)[0]:
            assert time.monotonic() - started < 2 * SHORT + SLACK, "no 408"
            sock.sendall(b"X-Slow-%d: %d\r\n" % (i, i))
            i += 1
        status, headers, _ = reader.answer()
        took = time.monotonic() - started
        assert status == 408 and headers["connection"] == "close"
        assert SHORT * 0.8 <= took < 2 * SHORT + SLACK, took
        assert _closed(reader)


@pytest.mark.parametrize("framing", ["chunked, no last chunk", "Content-Length, short"])
def test_a_body_that_stops_arriving_gets_a_408_and_the_connection_closes(
        strict: Served, framing: str) -> None:
    body = v2_body(_rows())
    if framing.startswith("chunked"):
        raw = (f"POST {PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\n\r\n").encode("ascii")
        raw += b"%x\r\n%s\r\n" % (len(body), body)  # no "0\r\n\r\n"
    else:
        raw = http_request(PATH, body)[:-5]
    with connect(strict) as sock:
        sock.settimeout(5)
        reader = Reader(sock)
        started = time.monotonic()
        sock.sendall(raw)
        status, headers, _ = reader.answer()
        took = time.monotonic() - started
        assert status == 408 and headers["connection"] == "close"
        assert SHORT * 0.8 <= took < SHORT + SLACK, took
        assert _closed(reader)


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(fast: Served) -> None:
    body = v2_body(_rows())
    with connect(fast) as sock:
        reader = Reader(sock)
        for _ in range(4):  # active for 2 s, past the 1 s timeout: stays open
            sock.sendall(http_request(PATH, body))
            assert reader.answer()[0] == 200
            time.sleep(0.5)
        started = time.monotonic()
        assert _closed(reader, timeout=5)
        assert time.monotonic() - started < 3


def test_a_client_that_reads_no_answer_is_dropped_after_the_write_timeout(
        strict: Served) -> None:
    """Requests with large answers, none read: once the answers fill the socket buffers the
    server waits write_timeout (1 s) for the client, then aborts the connection."""
    raw = http_request(PATH, v2_body(np.ones((2000, 4), np.float32)))  # ~60 kB answers
    stopped: list[float] = []

    def flood(sock: socket.socket) -> None:
        try:
            for _ in range(2000):
                sock.sendall(raw)
        except OSError:
            stopped.append(time.monotonic())

    with connect(strict) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        sock.settimeout(10)
        started = time.monotonic()
        sender = threading.Thread(target=flood, args=(sock,))
        sender.start()
        sender.join(15)
        assert stopped, "the server kept the connection of a client that reads nothing"
        assert 0.8 <= stopped[0] - started < 1.0 + 3 * SLACK, stopped[0] - started


# ---------------------------------------------------------------------- f. routing


@pytest.mark.parametrize("path", ["/predict/mlp%2Fversions%2F1", "/predict/mlp#frag"])
def test_a_path_is_routed_the_same_on_a_fresh_connection_and_after_a_get(
        fast: Served, path: str) -> None:
    """The same request on a fresh connection, after a GET on the same connection, and (a
    chunked body) through the app instead of the inference lane: the same answer."""
    rows = _rows(2)
    body = orjson.dumps({"data": rows.tolist()})
    raw = http_request(path, body)
    chunked = raw.replace(b"Content-Length: %d\r\n\r\n" % len(body),
                          b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(body))
    chunked += b"\r\n0\r\n\r\n"
    answers = {}
    for how, first, request in [("fresh", b"", raw), ("after a GET", READY, raw),
                                ("through the app", b"", chunked)]:
        with connect(fast) as sock:
            sock.settimeout(10)
            reader = Reader(sock)
            if first:
                sock.sendall(first)
                assert reader.answer()[0] == 200
            sock.sendall(request)
            answers[how] = reader.answer()
    statuses = {how: answer[0] for how, answer in answers.items()}
    assert len(set(statuses.values())) == 1, (statuses, answers)
    assert statuses["fresh"] == 200, answers  # %2F is a slash once decoded; #... is no part
    for answer in answers.values():
        predictions = orjson.loads(answer[2])["predictions"]
        np.testing.assert_allclose(predictions, expected(fast.repo, rows), rtol=1e-5,
                                   atol=1e-6)


def test_a_percent_encoded_model_name_is_served(fast: Served) -> None:
    rows = _rows(3)
    with connect(fast) as sock:
        sock.settimeout(10)
        sock.sendall(_infer(rows, "pct", "/v2/models/ml%70/infer"))
        _assert_scores(fast, Reader(sock).answer(), rows, "pct")


# ---------------------------------------------------------------------- ported from express


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
        assert _closed(Reader(idle), timeout=5)  # an idle one closes after LAST_CALL s
        partial.sendall(raw[-10:])
        time.sleep(0.3)
        gate.set()
        for conn in (sock, partial):
            reader = Reader(conn)
            status, headers, body = reader.answer()
            assert (status, body, headers["connection"]) == (200, b"{}", "close")
            assert _closed(reader)


def test_a_closed_connection_is_freed_without_the_cycle_collector(fast: Served) -> None:
    """A protocol must not sit in a reference cycle with its parser: a connection lives
    long enough to reach the collector's oldest generation, whose full passes are rare,
    so every closed connection (and the bytes it read) would stay until then."""
    assert fast.server is not None
    connections = fast.server.server_state.connections
    gc.disable()
    try:
        with connect(fast) as sock:
            sock.sendall(http_request(PATH, v2_body(_rows())))
            assert Reader(sock).answer()[0] == 200
            mine = [weakref.ref(c) for c in list(connections)]
        deadline = time.monotonic() + 5
        while any(ref() is not None for ref in mine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(ref() is None for ref in mine)
    finally:
        gc.enable()


def test_http_clients_work_unchanged(fast: Served) -> None:
    rows = _rows(3)
    with httpx.Client(base_url=fast.url) as client:
        for _ in range(3):
            response = client.post(PATH, content=v2_body(rows),
                                   headers={"content-type": "application/json"})
            assert response.status_code == 200
            np.testing.assert_allclose(scores(response.content), expected(fast.repo, rows),
                                       rtol=1e-5, atol=1e-6)
        assert client.get("/v2/health/ready").status_code == 200


# ---------------------------------------------------------------------- g, h. a real process


@dataclass
class Process:
    """A ``ferry serve`` subprocess: its PID, REST port and stderr (JSON log lines)."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def rss(self) -> int:
        """The server's resident memory, in bytes (VmRSS)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def log_size(self) -> int:
        return self.log.stat().st_size

    def log_lines(self, since: int) -> list[bytes]:
        with self.log.open("rb") as f:
            f.seek(since)
            return f.read().splitlines()


@pytest.fixture(scope="module")
def process(rest_repo: Repository, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Process]:
    """``ferry serve`` over the test repository (the mlp model) on free ports."""
    folder = tmp_path_factory.mktemp("serve")
    port = free_port()
    log, out = folder / "stderr.log", folder / "stdout.log"
    with log.open("wb") as err, out.open("wb") as stdout:
        child = subprocess.Popen(
            [sys.executable, "-m", "ferry", "serve", str(rest_repo.root), "--models", "mlp",
             "--http-port", str(port), "--grpc-port", str(free_port()),
             "--log-format", "json"],
            stdout=stdout, stderr=err, cwd=ROOT, env=dict(os.environ))
    server = Process(child, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert child.poll() is None, f"ferry serve exited:\n{log.read_text()}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready",
                             timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"ferry serve not ready:\n{log.read_text()}"
            time.sleep(0.1)
        _warm(server)
        yield server
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)


def _warm(server: Process) -> None:
    """Requests of every kind the memory tests send, so that first-use allocations are done."""
    body = v2_body(_rows())
    with server.connect() as sock:
        reader = Reader(sock)
        for i in range(200):
            sock.sendall(http_request(PATH, body, extra=f"X-Request-ID: w{i}\r\n"))
            assert reader.answer()[0] == 200
        sock.sendall(http_request(f"/v2/models/{'w' * 5000}/infer", body))
        assert reader.answer()[0] == 404
    _target_too_long(server, "w" * (60 << 10))


def _target_too_long(server: Process, name: str) -> int:
    """One request to a model path of ``name`` on a connection of its own; its status."""
    raw = http_request(f"/v2/models/{name}/infer", b"{}")
    with server.connect() as sock:
        sock.settimeout(10)
        with contextlib.suppress(OSError):  # refused and closed before it was all sent
            sock.sendall(raw)
        reader = Reader(sock)
        status = reader.answer()[0]
        assert _closed(reader)
    return status


class _Peak:
    """The server's largest RSS, sampled every 20 ms in a thread until stopped."""

    def __init__(self, server: Process) -> None:
        self.server = server
        self.peak = server.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.server.rss())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.server.rss())
        return self.peak


def test_a_client_that_pipelines_and_never_reads_is_held_to_a_few_megabytes(
        process: Process) -> None:
    """The client sends inference requests for 3 s (or 300 MB) and reads nothing: the
    server must stop reading (read-ahead, then the socket buffers fill) instead of taking
    everything in."""
    one = http_request(PATH, v2_body(_rows()))
    chunk = one * ((64 << 10) // len(one))
    base = process.rss()
    peak = _Peak(process)
    state = {"sent": 0, "blocked": False}

    def flood(sock: socket.socket) -> None:
        sock.settimeout(0.5)  # no progress for 0.5 s: the client's send is blocked
        view = memoryview(chunk)
        offset = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and state["sent"] < 300 << 20:
            try:
                n = sock.send(view[offset:])
            except TimeoutError:
                state["blocked"] = True
                return
            state["sent"] += n
            offset = (offset + n) % len(chunk)

    with process.connect() as sock:
        sender = threading.Thread(target=flood, args=(sock,))
        sender.start()
        sender.join(10)
        time.sleep(0.3)  # the server works through what it read meanwhile
        grown = peak.stop() - base
    print(f"\nnever-reading client: {state['sent'] / 2**20:.1f} MiB accepted "
          f"({state['sent'] // len(one)} requests) before its send blocked: "
          f"{state['blocked']}; server RSS +{grown / 2**20:.1f} MiB")
    assert state["blocked"], f"the server took {state['sent']} bytes without pushing back"
    assert state["sent"] < 16 << 20, state
    assert grown < 50 << 20, grown
    assert httpx.get(f"http://127.0.0.1:{process.port}/v2/health/ready").status_code == 200


def test_300_pipelined_60_kb_requests_hold_little_memory(process: Process,
                                                        rest_repo: Repository) -> None:
    rows = _rows(700)
    body = v2_body(rows)
    assert 50_000 < len(body) < 70_000
    count = 300
    stream = b"".join(http_request(PATH, body, extra=f"X-Request-ID: big{i}\r\n")
                      for i in range(count))
    errors: list[BaseException] = []
    base = process.rss()
    peak = _Peak(process)
    with process.connect() as sock:
        sock.settimeout(20)
        sender = threading.Thread(target=_sendall_quietly, args=(sock, stream, errors))
        sender.start()
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(count)]
        sender.join(20)
    grown = peak.stop() - base
    print(f"\n300 pipelined 60 kB requests ({len(stream) / 2**20:.1f} MiB): server RSS "
          f"+{grown / 2**20:.1f} MiB")
    assert not errors
    assert [(s, h["x-request-id"]) for s, h, _ in answers] == [
        (200, f"big{i}") for i in range(count)]
    np.testing.assert_allclose(scores(answers[-1][2]), expected(rest_repo, rows), rtol=1e-5,
                               atol=1e-6)
    assert grown < 60 << 20, grown


def test_long_model_paths_hold_little_memory_and_log_short_lines(process: Process) -> None:
    """300 requests to 60 kB model paths (414, each on its own connection), then 300 to
    5 kB model paths (404, pipelined on one): memory stays flat, log lines stay short."""
    base = process.rss()
    peak = _Peak(process)
    statuses = {_target_too_long(process, f"{i:05d}" + "m" * (60 << 10)) for i in range(300)}
    # Closed connections must be freed by reference counting, not left to a full garbage
    # collection (a protocol <-> parser cycle once kept each one, ~64 kB apiece): 600 more
    # must not grow the server.
    warm = process.rss()
    statuses |= {_target_too_long(process, f"{i:05d}" + "m" * (60 << 10))
                 for i in range(300, 900)}
    kept = process.rss() - warm
    assert statuses == {414}
    assert kept < 6 << 20, f"600 refused connections kept {kept / 2**20:.1f} MiB"
    since = process.log_size()
    body = v2_body(_rows())
    stream = b"".join(http_request(f"/v2/models/{i:05d}{'n' * 5000}/infer", body,
                                   extra=f"X-Request-ID: long{i}\r\n") for i in range(300))
    errors: list[BaseException] = []
    with process.connect() as sock:
        sock.settimeout(20)
        sender = threading.Thread(target=_sendall_quietly, args=(sock, stream, errors))
        sender.start()
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(300)]
        sender.join(20)
    grown = peak.stop() - base
    assert not errors
    assert [(s, h["x-request-id"]) for s, h, _ in answers] == [
        (404, f"long{i}") for i in range(300)]
    # Refusals are logged up to a budget a second (LineBudget), the rest only counted.
    lines = _lines_mentioning(process, since, b'"long')
    longest = max(len(line) for line in lines)
    print(f"\n300 x 60 kB paths (414) + 300 x 5 kB paths (404): server RSS "
          f"+{grown / 2**20:.1f} MiB; {len(lines)} log lines, the longest {longest} bytes")
    assert grown < 30 << 20, grown
    assert 1 <= sum(b"long" in line for line in lines) <= 300
    assert longest < 2048, max(lines, key=len)[:300]


def _lines_mentioning(server: Process, since: int, needle: bytes,
                      timeout: float = 5.0) -> list[bytes]:
    """The log lines written since offset ``since``, once one of them holds ``needle``."""
    deadline = time.monotonic() + timeout
    while True:
        lines = server.log_lines(since)
        if any(needle in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_a_refused_request_with_a_5000_character_model_name_logs_short_lines(
        process: Process) -> None:
    """Through every door a model name reaches (the inference lane, the app's routes, a
    refusal by the protocol): each line about it stays short, and no longer for a longer
    name. ~1 KB: the name is clipped to 200 characters where it appears (twice in the
    message, once as the model field), the error message to 400."""
    body = v2_body(_rows())
    time.sleep(1.1)  # refusals are logged up to a budget a second: let a new second start
    since = process.log_size()
    with process.connect() as sock:
        sock.settimeout(10)
        reader = Reader(sock)
        for size in (5000, 8000):
            name = "q" * size
            chunked = http_request(f"/v2/models/{name}/infer", body).replace(
                b"Content-Length: %d\r\n\r\n" % len(body),
                b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(body)) + b"\r\n0\r\n\r\n"
            for i, raw in enumerate([
                http_request(f"/v2/models/{name}/infer", body),  # the inference lane
                http_request(f"/predict/{name}", orjson.dumps({"data": [[1, 2, 3, 4]]})),
                chunked,  # the app's infer route
                f"GET /v2/models/{name} HTTP/1.1\r\nHost: t\r\n\r\n".encode("ascii"),
                f"GET /v2/models/{name}/ready HTTP/1.1\r\nHost: t\r\n\r\n".encode("ascii"),
                f"POST /v2/repository/models/{name}/load HTTP/1.1\r\nHost: t\r\n"
                "Content-Length: 0\r\n\r\n".encode("ascii"),
                f"GET /no/such/{name} HTTP/1.1\r\nHost: t\r\n\r\n".encode("ascii"),
            ]):
                rid = b"h%d-%d" % (size, i)
                sock.sendall(raw.replace(b"Host: t\r\n", b"Host: t\r\nX-Request-ID: %s\r\n"
                                         % rid))
                status = reader.answer()[0]
                assert 400 <= status < 500, (rid, status)
        sock.sendall(http_request(f"/v2/models/{'r' * (9 << 10)}/infer", body))
        assert reader.answer()[0] == 414  # refused before its X-Request-ID could be read
    lines = _lines_mentioning(process, since, b"refused an HTTP request with 414")
    mentions = {size: [line for line in lines if b'"h%d-' % size in line]
                for size in (5000, 8000)}
    assert mentions[5000] and len(mentions[5000]) == len(mentions[8000]), lines
    sizes = {size: sorted(len(line) for line in found) for size, found in mentions.items()}
    print(f"\nlog lines about a 5000-character model name: {sizes[5000]} bytes; "
          f"8000 characters: {sizes[8000]}")
    assert sizes[5000] == sizes[8000]  # the same length, whatever the name's
    assert all(len(line) <= 1280 for line in lines), max(lines, key=len)[:300]
