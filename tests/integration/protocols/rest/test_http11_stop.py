"""A stopping server's keep-alive connections (http11.py ``HttpProtocol.shutdown``): none is
cut while its client may be sending; the next request on each is answered, with
``Connection: close``, and a connection that stays silent closes after ``LAST_CALL``.
A real engine and ONNX model under uvicorn on 127.0.0.1, raw sockets.
"""

from __future__ import annotations

import time

import numpy as np

from ferry.engine import Engine
from ferry.protocols.rest.http11 import LAST_CALL
from ferry.repository import Repository
from raw_http import Reader, connect, expected, http_request, scores, v2_body
from rest_server import serve

PATH = "/v2/models/mlp/infer"
ROWS = np.array([[0.5, -1.0, 2.0, 0.25]], np.float32)


def test_an_idle_keep_alive_connection_gets_one_last_answer_then_closes(
        rest_repo: Repository) -> None:
    request = http_request(PATH, v2_body(ROWS))
    with serve(Engine(rest_repo), rest_repo) as served, connect(served) as busy, \
            connect(served) as silent:
        readers = {sock: Reader(sock) for sock in (busy, silent)}
        for sock, reader in readers.items():  # both used once, then idle between requests
            sock.sendall(request)
            status, headers, _ = reader.answer()
            assert status == 200 and headers.get("connection") != "close"
        assert served.server is not None
        served.server.should_exit = True
        deadline = time.monotonic() + 5
        while served.server.servers and any(s.is_serving() for s in served.server.servers):
            assert time.monotonic() < deadline, "uvicorn did not begin its shutdown"
            time.sleep(0.01)
        stopped = time.monotonic()
        # The client sends its next request after the stop began: it is answered, not cut,
        # and the answer says the connection closes.
        busy.sendall(request)
        status, headers, body = readers[busy].answer()
        assert (status, headers["connection"]) == (200, "close")
        np.testing.assert_allclose(scores(body), expected(rest_repo, ROWS), rtol=1e-5)
        assert readers[busy].closed()
        # The silent client's connection is closed for it, after LAST_CALL seconds.
        assert readers[silent].closed(timeout=LAST_CALL + 5)
        assert time.monotonic() - stopped >= LAST_CALL * 0.9
