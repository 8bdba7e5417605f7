"""ferry error codes -> HTTP statuses: complete, and retry hints as Retry-After."""

from __future__ import annotations

import orjson
import pytest

from ferry.errors import (
    ErrorCode,
    InputError,
    InternalError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from ferry.protocols.rest.errors import STATUS, error_response, status_of


def test_every_error_code_has_a_status():
    assert set(STATUS) == set(ErrorCode)


@pytest.mark.parametrize(("error", "status"), [
    (InputError("bad"), 400), (NotFoundError("gone"), 404), (PayloadTooLargeError("big"), 413),
    (UnsupportedMediaTypeError("xml"), 415), (RateLimitedError("full"), 429),
    (UnavailableError("later"), 503), (InternalError("bug"), 500),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v))
def test_status_of_each_branch(error, status):
    assert status_of(error) == status


def test_error_body_is_the_protocols_error_object_with_the_hint():
    response = error_response(InputError("input 'x': wrong", hint="send FP32"))
    assert response.status_code == 400
    assert orjson.loads(response.body) == {"error": "input 'x': wrong (send FP32)"}
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(("retry_after", "header"), [(0.2, "1"), (2.5, "3"), (7.0, "7")])
def test_rate_limited_answers_carry_retry_after_in_whole_seconds(retry_after, header):
    response = error_response(RateLimitedError("queue of 'm' is full", retry_after=retry_after))
    assert response.status_code == 429 and response.headers["retry-after"] == header


def test_a_401_names_the_bearer_scheme_and_a_403_does_not():
    from ferry.errors import AuthenticationError, PermissionDeniedError

    unauthenticated = error_response(AuthenticationError("no credentials"))
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == 'Bearer realm="ferry"'
    denied = error_response(PermissionDeniedError("not yours"))
    assert denied.status_code == 403 and "www-authenticate" not in denied.headers
