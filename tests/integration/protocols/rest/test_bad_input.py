"""Every bad input of issue 4 (deliver 12) on REST: a 4xx with {"error": "<what and where>"},
never a 5xx, a hang or a dead worker. Sent with httpx to a real server.
"""

from __future__ import annotations

import gzip
import struct

import httpx
import orjson
import pytest

from rest_server import MAX_BODY

INFER = "/v2/models/pair/infer"


def _pair(**changes):
    a = {"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
    b = {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}
    a.update(changes)
    return {"inputs": [a, b]}


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _check(response: httpx.Response, status: int, *phrases: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for phrase in phrases:
        assert phrase in message
    assert response.headers["x-request-id"]
    return message


CASES = [
    # (id, path, body, headers, status, phrases)
    ("malformed-json", INFER, b'{"inputs": [', {}, 400, ["malformed JSON"]),
    ("not-an-object", INFER, b"[1, 2]", {}, 400, ["must be a JSON object, got a list"]),
    ("empty-body", INFER, b"", {}, 400, ["empty inference request"]),
    ("wrong-content-type", INFER, orjson.dumps(_pair()), {"content-type": "text/plain"}, 415,
     ["Content-Type 'text/plain' is not accepted", "application/json"]),
    ("form-content-type", "/predict/mlp", b"data=1",
     {"content-type": "application/x-www-form-urlencoded"}, 415, ["is not accepted"]),
    ("length-vs-shape", INFER, orjson.dumps(_pair(data=[1, 2, 3])), {}, 400,
     ["input 'a'", "shape [1, 4] needs 4 values, 'data' has 3"]),
    ("wrong-datatype", INFER, orjson.dumps(_pair(datatype="INT32")), {}, 400,
     ["input 'a'", "FP32", "INT32"]),
    ("unknown-datatype", INFER, orjson.dumps(_pair(datatype="FLOAT")), {}, 400,
     ["input 'a': unknown datatype 'FLOAT'"]),
    ("bytes-declared-for-numbers", INFER,
     orjson.dumps(_pair(datatype="BYTES", data=["1", "2", "3", "4"])), {}, 400,
     ["input 'a'", "FP32", "BYTES"]),
    ("strings-in-number-data", INFER, orjson.dumps(_pair(data=["1", "2", "3", "4"])), {}, 400,
     ["input 'a': expected FP32 values, got strings"]),
    ("unknown-input", INFER, orjson.dumps(
        {"inputs": [*_pair()["inputs"], {"name": "c", "datatype": "FP32", "shape": [1, 4],
                                          "data": [0, 0, 0, 0]}]}), {}, 400,
     ["unknown input 'c'", "'a', 'b'"]),
    ("missing-input", INFER, orjson.dumps({"inputs": _pair()["inputs"][:1]}), {}, 400,
     ["missing input 'b'"]),
    ("negative-shape", INFER, orjson.dumps(_pair(shape=[-1, 4])), {}, 400,
     ["input 'a': 'shape' must be a list of non-negative integers"]),
    ("absurd-shape", INFER, orjson.dumps(_pair(shape=[2**40, 2**40])), {}, 400,
     ["input 'a'", "dimension 1099511627776 of shape", "above the maximum of 2147483647"]),
    ("wrong-rank", INFER, orjson.dumps(_pair(shape=[4])), {}, 400, ["input 'a'", "[-1, 4]"]),
    ("header-length-beyond-body", INFER, orjson.dumps(_pair()),
     {"inference-header-content-length": "100000"}, 400,
     ["Inference-Header-Content-Length 100000 is beyond the body of"]),
    ("header-length-huge", INFER, orjson.dumps(_pair()),
     {"inference-header-content-length": "9" * 5000}, 400, ["is not a number of bytes"]),
    ("binary-size-beyond-data", INFER, orjson.dumps(
        _pair(data=None, parameters={"binary_data_size": 16})).replace(b'"data":null,', b""),
     {}, 400, ["input 'a': binary_data_size 16 at offset 0 is beyond the 0 bytes"]),
    ("unsupported-encoding", INFER, orjson.dumps(_pair()), {"content-encoding": "br"}, 415,
     ["Content-Encoding 'br' is not supported"]),
    ("corrupt-gzip", INFER, b"not gzip", {"content-encoding": "gzip"}, 400,
     ["cannot be inflated"]),
    ("predict-empty", "/predict/mlp", b"", {}, 400, ["empty request body"]),
    ("predict-no-data", "/predict/mlp", b'{"rows": []}', {}, 400, ['{"data": [[...], ...]}']),
    ("predict-wrong-width", "/predict/mlp", b'{"data": [[1, 2, 3]]}', {}, 400,
     ["input 'x'", "[-1, 4]", "[1, 3]"]),
    ("predict-strings", "/predict/mlp", b'{"data": [["a", "b", "c", "d"]]}', {}, 400,
     ["input 'x': expected FP32 values, got strings"]),
    ("tfserving-neither", "/v1/models/mlp:predict", b'{"foo": 1}', {}, 400,
     ['either "instances"', '"inputs"']),
    ("tfserving-ragged", "/v1/models/mlp:predict", b'{"instances": [[1, 2, 3, 4], [1]]}', {},
     400, ["not a rectangular array"]),
    ("index-ready-not-bool", "/v2/repository/index", b'{"ready": "yes"}', {}, 400,
     ["'ready' must be true or false"]),
    ("load-with-config", "/v2/repository/models/pair/load",
     b'{"parameters": {"config": "{}"}}', {}, 400, ["parameter 'config' is not supported"]),
    # What the OpenAPI document forbids, the server refuses (test_schemathesis.py).
    ("load-parameters-null", "/v2/repository/models/pair/load", b'{"parameters": null}', {},
     400, ["load 'pair': 'parameters' must be a JSON object"]),
    ("unload-parameters-list", "/v2/repository/models/nope/unload", b'{"parameters": []}',
     {}, 400, ["unload 'nope': 'parameters' must be a JSON object"]),
    ("unload-dependents-not-bool", "/v2/repository/models/nope/unload",
     b'{"parameters": {"unload_dependents": null}}', {}, 400,
     ["'unload_dependents' must be true or false"]),
    ("binary-data-output-not-bool", INFER, orjson.dumps(
        {**_pair(), "parameters": {"binary_data_output": "yes"}}), {}, 400,
     ["request: parameter 'binary_data_output' must be true or false, got a string"]),
    ("binary-data-not-bool", INFER, orjson.dumps(
        {**_pair(), "outputs": [{"name": "sum", "parameters": {"binary_data": 1}}]}), {}, 400,
     ["output 'sum': parameter 'binary_data' must be true or false, got a number"]),
    ("tfserving-signature-not-string", "/v1/models/mlp:predict",
     b'{"instances": [[1, 2, 3, 4]], "signature_name": 1}', {}, 400,
     ['"signature_name" must be a string']),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "phrases"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_4xx_naming_the_problem(http, path, body, headers, status, phrases):
    _check(http.post(path, content=body, headers=headers), status, *phrases)


@pytest.mark.parametrize(("path", "phrases"), [
    ("/v2/models/nope/infer", ["nope"]),
    ("/v2/models/pair/versions/99/infer", ["99"]),
    ("/predict/nope", ["nope"]),
    ("/v1/models/nope:predict", ["nope"]),
    ("/v1/models/pair/versions/99:predict", ["99"]),
], ids=["v2-model", "v2-version", "predict-model", "tfserving-model", "tfserving-version"])
def test_unknown_model_or_version_is_404(http, path, phrases):
    body = (orjson.dumps(_pair()) if "/v2/" in path else b'{"data": [[1, 2, 3, 4]]}'
            if "/predict" in path else b'{"instances": [[1, 2, 3, 4]]}')
    _check(http.post(path, content=body), 404, *phrases)


@pytest.mark.parametrize("path", ["/v2/models/nope", "/v2/models/pair/versions/99",
                                  "/v2/models/nope/ready", "/v2/repository/models/nope/load"])
def test_unknown_model_on_other_routes_is_404(http, path):
    method = http.post if "repository" in path else http.get
    _check(method(path), 404)


def test_unknown_output_is_404_naming_the_outputs(http):
    body = {**_pair(), "outputs": [{"name": "product"}]}
    _check(http.post(INFER, content=orjson.dumps(body)), 404, "unknown output 'product'",
           "'sum'")


def test_huge_body_by_content_length_is_413_before_reading(http):
    body = b'{"inputs": [' + b" " * MAX_BODY + b"]}"
    _check(http.post(INFER, content=body), 413, f"limit of {MAX_BODY} bytes")


def test_huge_chunked_body_is_413_while_streaming(http):
    def chunks():
        yield b'{"inputs": ['
        for _ in range(40):
            yield b" " * (64 << 10)
        yield b"]}"

    _check(http.post(INFER, content=chunks()), 413, f"more than {MAX_BODY} bytes")


def test_gzip_bomb_is_413(http):
    bomb = gzip.compress(b'{"inputs": [' + b" " * (MAX_BODY * 4) + b"]}")
    assert len(bomb) < MAX_BODY
    _check(http.post(INFER, content=bomb, headers={"content-encoding": "gzip"}), 413, "limit")


def test_gzip_body_within_the_limit_is_read(http):
    body = gzip.compress(orjson.dumps(_pair()))
    response = http.post(INFER, content=body, headers={"content-encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [2.0, 3.0, 4.0, 5.0]


def test_bad_bytes_binary_element_length(http):
    doc = orjson.dumps({"inputs": [{"name": "in_bytes", "datatype": "BYTES", "shape": [1, 1],
                                    "parameters": {"binary_data_size": 8}}]})
    raw = struct.pack("<I", 1000) + b"abcd"
    response = http.post("/v2/models/alltypes/infer", content=doc + raw,
                         headers={"inference-header-content-length": str(len(doc))})
    _check(response, 400, "input 'in_bytes'", "overruns")


def test_unknown_route_and_wrong_method_are_json_errors(http):
    _check(http.get("/v3/whatever"), 404, "no route GET /v3/whatever")
    _check(http.get(INFER), 405, "GET is not allowed")


def test_the_server_still_answers_after_all_that(http):
    response = http.post(INFER, content=orjson.dumps(_pair()))
    assert response.status_code == 200
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs == {"sum": [2.0, 3.0, 4.0, 5.0], "diff": [0.0, 1.0, 2.0, 3.0]}


def test_a_client_that_leaves_mid_body_does_not_hurt_the_server(http, server):
    import socket
    from urllib.parse import urlsplit

    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /v2/models/pair/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"inputs\": [")
    for _ in range(3):
        assert http.post(INFER, content=orjson.dumps(_pair())).status_code == 200
