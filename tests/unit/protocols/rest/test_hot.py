"""Which requests the inference fast lane takes, decided from the path and the head alone."""

from __future__ import annotations

import pytest

from ferry.protocols.rest.head import (
    _MEDIA,
    _MEDIA_KEY,
    _MEDIA_MAX,
    JSON,
    OCTETS,
    OTHER,
    media,
    read_head,
)
from ferry.protocols.rest.hot import match


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


@pytest.mark.parametrize(("headers", "binary", "fast"), [
    ([(b"content-length", b"10")], False, True),  # no Content-Type: tritonclient sends none
    ([(b"content-length", b"10"), (b"content-type", b"application/json")], False, True),
    ([(b"content-length", b"10"), (b"content-type", b"Application/JSON; charset=utf-8")],
     False, True),
    ([(b"content-length", b"10"), (b"content-type", b"application/vnd.x+json")], False, True),
    ([(b"content-length", b"10"), (b"content-type", b"application/octet-stream")], True, True),
    ([(b"content-length", b"10"), (b"content-type", b"application/octet-stream")], False,
     False),
    ([(b"content-length", b"10"), (b"content-type", b"text/plain")], False, False),
    ([(b"content-length", b"10"), (b"content-encoding", b"gzip")], False, False),
    ([(b"transfer-encoding", b"chunked")], False, False),
    ([(b"content-length", b"ten")], False, False),
    ([(b"content-length", b"0")], False, False),
    ([], False, False),
])
def test_only_plain_bodies_take_the_fast_lane(headers, binary, fast):
    assert read_head(headers).fast(binary=binary) is fast


def test_the_head_reads_ids_credentials_and_the_binary_header_in_one_pass():
    head = read_head([(b"host", b"h"), (b"x-request-id", b"abc"),
                      (b"authorization", b"Bearer t"),
                      (b"inference-header-content-length", b"12"),
                      (b"expect", b"100-Continue"), (b"content-length", b"40")])
    assert (head.hosts, head.length, head.request_id, head.authorization, head.binary,
            head.expect_continue) == (1, 40, b"abc", b"Bearer t", "12", True)
    assert read_head([(b"x-request-id", b"bad\x01id")]).request_id is None
    assert read_head([(b"x-request-id", b"x" * 129)]).request_id is None


@pytest.mark.parametrize(("value", "kind"), [
    (b"application/json", JSON), (b"Application/JSON; charset=utf-8", JSON),
    (b"application/vnd.api+json", JSON), (b"application/octet-stream", OCTETS),
    (b"text/plain", OTHER), (b"application/jsonx", OTHER), (b"", OTHER),
])
def test_media_reads_the_same_each_time_it_is_asked(value, kind) -> None:
    assert media(value) == kind and media(value) == kind  # the second from the memo


def test_the_media_memo_holds_few_short_values() -> None:
    for i in range(500):
        assert media(b"text/x-%d" % i) == OTHER
    assert media(b"application/json; x=" + b"y" * 1000) == JSON
    assert len(_MEDIA) <= _MEDIA_MAX and all(len(key) <= _MEDIA_KEY for key in _MEDIA)
    assert media(b"application/json") == JSON  # read without the memo once it is full
