"""Which requests the inference fast lane takes, decided from the path and headers alone."""

from __future__ import annotations

import pytest

from ferry.protocols.rest.hot import match, plain_length


@pytest.mark.parametrize(("path", "endpoint", "params"), [
    ("/predict", "predict", {}),
    ("/predict/digits", "predict", {"model": "digits"}),
    ("/predict/digits/versions/2", "predict", {"model": "digits", "version": "2"}),
    ("/predict/my model", "predict", {"model": "my model"}),  # paths arrive decoded once
    ("/predict/a%41", "predict", {"model": "a%41"}),  # and are not decoded a second time
    ("/v2/models/digits/infer", "infer", {"model": "digits"}),
    ("/v2/models/digits/versions/3/infer", "infer", {"model": "digits", "version": "3"}),
])
def test_inference_paths_are_recognised(path, endpoint, params):
    assert match(path) == (endpoint, params)


@pytest.mark.parametrize("path", [
    "/", "/predictions", "/predict/", "/predict/a/b", "/predict/a/versions", "/v2/models/digits",
    "/v2/models//infer", "/v2/models/a/b/infer", "/v2/models/digits/ready", "/v2/health/live",
    "/v1/models/digits:predict",
])
def test_other_paths_go_to_the_router(path):
    assert match(path) is None


@pytest.mark.parametrize(("headers", "binary", "expected"), [
    ([(b"content-length", b"10")], False, 10),
    ([(b"content-length", b"10"), (b"content-type", b"application/json")], False, 10),
    ([(b"content-length", b"10"), (b"content-type", b"Application/JSON; charset=utf-8")],
     False, 10),
    ([(b"content-length", b"10"), (b"content-type", b"application/octet-stream")], True, 10),
    ([(b"content-length", b"10"), (b"content-type", b"application/octet-stream")], False, None),
    ([(b"content-length", b"10"), (b"content-type", b"text/plain")], False, None),
    ([(b"content-length", b"10"), (b"content-encoding", b"gzip")], False, None),
    ([(b"transfer-encoding", b"chunked")], False, None),
    ([(b"content-length", b"1001")], False, None),  # over the limit: the route says 413
    ([(b"content-length", b"ten")], False, None),
    ([], False, None),
])
def test_only_plain_bodies_take_the_fast_lane(headers, binary, expected):
    assert plain_length(headers, binary=binary, limit=1000) == expected
