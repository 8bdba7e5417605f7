"""ferry's HTTP/1.1 protocol (http11.py) over raw sockets: the inference lane and the app.

What it answers without ASGI must still be HTTP/1.1 done right: pipelined requests answered
in order (lane and ASGI routes mixed), keep-alive and ``Connection: close``, HTTP/1.0,
``Expect: 100-continue`` and large bodies, request ids, and models that answer inline as well
as models that wait for a thread (``inline_below_ms = 0``), under concurrency. The same
tests run against stock uvicorn (httptools and h11) with the ASGI app alone, which must
behave the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest

from ferry.engine import Engine, ModelConfig
from ferry.repository import Repository
from raw_http import Reader, connect, expected, http_request, scores, v2_body
from rest_server import Served, serve

_rng = np.random.default_rng(7)


@pytest.fixture(scope="module", params=["inline", "thread", "uvicorn-httptools", "uvicorn-h11"])
def lane_server(request: pytest.FixtureRequest, rest_repo: Repository) -> Iterator[Served]:
    """What ``ferry serve`` runs (http11.py) over a model that runs inline, and over one that
    always waits for a thread; and, for comparison, the same routes through the ASGI app
    alone on stock uvicorn with either of its parsers."""
    inline = 0.0 if request.param == "thread" else 0.1
    engine = Engine(rest_repo, defaults=ModelConfig(inline_below_ms=inline))
    lane = {"uvicorn-httptools": "httptools", "uvicorn-h11": "h11"}.get(request.param, True)
    with serve(engine, rest_repo, lane=lane) as served:
        yield served


def test_pipelined_requests_are_answered_in_order(lane_server: Served) -> None:
    rows = [_rng.standard_normal((n, 4)).astype(np.float32) for n in (1, 3, 2)]
    burst = b"".join([
        http_request("/v2/models/mlp/infer", v2_body(rows[0])),
        b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n",  # the ASGI path, between two
        http_request("/v2/models/mlp/versions/1/infer", v2_body(rows[1])),
        http_request("/predict/mlp", orjson.dumps({"data": rows[2].tolist()})),
        http_request("/v2/models/nope/infer", v2_body(rows[0])),
    ])
    with connect(lane_server) as sock:
        sock.sendall(burst)
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(5)]
    assert [a[0] for a in answers] == [200, 200, 200, 200, 404]
    np.testing.assert_allclose(scores(answers[0][2]), expected(lane_server.repo, rows[0]),
                               rtol=1e-5, atol=1e-6)
    assert orjson.loads(answers[1][2]) == {"live": True}
    np.testing.assert_allclose(scores(answers[2][2]), expected(lane_server.repo, rows[1]),
                               rtol=1e-5, atol=1e-6)
    predict = orjson.loads(answers[3][2])
    np.testing.assert_allclose(predict["predictions"], expected(lane_server.repo, rows[2]),
                               rtol=1e-5, atol=1e-6)
    assert predict["model"] == "mlp" and len(predict["labels"]) == 2
    assert "nope" in orjson.loads(answers[4][2])["error"]
    assert len({a[1]["x-request-id"] for a in answers}) == 5  # a fresh id each


def test_connection_close_and_http_1_0_close_after_the_answer(lane_server: Served) -> None:
    rows = _rng.standard_normal((1, 4)).astype(np.float32)
    for extra, version in (("Connection: close\r\n", "1.1"), ("", "1.0")):
        with connect(lane_server) as sock:
            sock.sendall(http_request("/v2/models/mlp/infer", v2_body(rows), extra=extra,
                                  version=version))
            reader = Reader(sock)
            status, headers, body = reader.answer()
            assert status == 200 and headers["connection"] == "close"
            np.testing.assert_allclose(scores(body), expected(lane_server.repo, rows),
                                       rtol=1e-5, atol=1e-6)
            assert reader.closed()


def test_keep_alive_serves_many_requests_on_one_connection(lane_server: Served) -> None:
    with connect(lane_server) as sock:
        reader = Reader(sock)
        for _ in range(20):
            rows = _rng.standard_normal((2, 4)).astype(np.float32)
            sock.sendall(http_request("/v2/models/mlp/infer", v2_body(rows), extra="X-Request-ID: k1\r\n"))
            status, headers, body = reader.answer()
            assert status == 200 and headers["x-request-id"] == "k1"
            assert "connection" not in headers
            np.testing.assert_allclose(scores(body), expected(lane_server.repo, rows),
                                       rtol=1e-5, atol=1e-6)


def test_expect_continue_and_large_bodies_take_the_asgi_path(lane_server: Served) -> None:
    big = _rng.standard_normal((3000, 4)).astype(np.float32)  # ~90 kB of JSON: past 64 KiB
    small = _rng.standard_normal((1, 4)).astype(np.float32)
    with connect(lane_server) as sock:
        reader = Reader(sock)
        body = v2_body(small)
        head = http_request("/v2/models/mlp/infer", b"", extra="Expect: 100-continue\r\n")
        head = head.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode())
        sock.sendall(head)
        status, _, _ = reader.answer()
        assert status == 100
        sock.sendall(body)
        status, _, answer = reader.answer()
        assert status == 200
        np.testing.assert_allclose(scores(answer), expected(lane_server.repo, small),
                                   rtol=1e-5, atol=1e-6)
        payload = v2_body(big)
        assert len(payload) > 65536
        sock.sendall(http_request("/v2/models/mlp/infer", payload))
        status, _, answer = reader.answer()
        assert status == 200
        np.testing.assert_allclose(scores(answer), expected(lane_server.repo, big),
                                   rtol=1e-5, atol=1e-6)


def test_bad_requests_on_the_lane_get_their_4xx(lane_server: Served) -> None:
    with httpx.Client(base_url=lane_server.url) as client:
        cases = [
            (b"{not json", 400, "json"),
            (orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                       "data": [1, 2, 3]}]}), 400, "3"),
            (orjson.dumps({"inputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4],
                                       "data": [1, 2, 3, 4]}]}), 400, "'y'"),
        ]
        for body, status, words in cases:
            response = client.post("/v2/models/mlp/infer", content=body,
                                   headers={"content-type": "application/json"})
            assert response.status_code == status, response.text
            assert words in response.json()["error"].lower()
            assert response.headers["x-request-id"]


def test_concurrent_requests_each_get_their_own_answer(lane_server: Served) -> None:
    batches = [_rng.standard_normal((1 + i % 3, 4)).astype(np.float32) for i in range(200)]

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=lane_server.url, limits=limits,
                                     timeout=60) as client:
            return await asyncio.gather(*(
                client.post("/v2/models/mlp/infer", content=v2_body(rows),
                            headers={"content-type": "application/json"})
                for rows in batches))

    responses = asyncio.run(main())
    for rows, response in zip(batches, responses, strict=True):
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(scores(response.content),
                                   expected(lane_server.repo, rows), rtol=1e-5, atol=1e-6)


def test_a_client_that_leaves_before_its_answer_does_not_harm_the_next(
        lane_server: Served) -> None:
    rows = _rng.standard_normal((1, 4)).astype(np.float32)
    for _ in range(10):
        with connect(lane_server) as sock:
            sock.sendall(http_request("/v2/models/mlp/infer", v2_body(rows)))
    with httpx.Client(base_url=lane_server.url) as client:
        response = client.post("/v2/models/mlp/infer", content=v2_body(rows),
                               headers={"content-type": "application/json"})
    assert response.status_code == 200
    np.testing.assert_allclose(scores(response.content), expected(lane_server.repo, rows),
                               rtol=1e-5, atol=1e-6)


def test_an_unexpected_failure_is_a_500_naming_the_request_id(
        lane_server: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection (a bug cannot be made on purpose in the real path): the answer names
    the request id, the traceback stays in the log, and the connection keeps serving."""
    import ferry.protocols.rest.hot as hot

    async def broken(*args: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(hot, "answer", broken)
    rows = _rng.standard_normal((1, 4)).astype(np.float32)
    with httpx.Client(base_url=lane_server.url) as client:
        response = client.post("/v2/models/mlp/infer", content=v2_body(rows),
                               headers={"content-type": "application/json",
                                        "x-request-id": "boom-1"})
        assert response.status_code == 500
        assert response.json() == {"error": "internal error; the server log has the details "
                                            "under request id boom-1"}
        assert response.headers["x-request-id"] == "boom-1"
        monkeypatch.undo()
        again = client.post("/v2/models/mlp/infer", content=v2_body(rows),
                            headers={"content-type": "application/json"})
        assert again.status_code == 200
