"""ferry's errors as HTTP answers: one table from :class:`~ferry.errors.ErrorCode` to status.

Every error body is the protocol's ``{"error": "<message>"}``. Refusals that invite a retry
(a full queue, a model not ready) carry ``Retry-After`` in whole seconds, as RFC 9110 asks;
a 401 carries ``WWW-Authenticate: Bearer``.
An error ferry did not raise on purpose becomes a 500 whose message names the request id, so
an operator can find the traceback in the log; the client never sees the traceback.
"""

from __future__ import annotations

import math

import orjson
from starlette.responses import Response

from ferry.errors import (
    ErrorCode,
    FerryError,
    PayloadTooLargeError,
    RateLimitedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)

__all__ = ["STATUS", "error_response", "internal_error_response", "status_of"]

#: ferry error code -> HTTP status. Complete: a test checks that every ErrorCode is here.
STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.FAILED_PRECONDITION: 400,
    ErrorCode.DATA_LOSS: 500,
    ErrorCode.UNIMPLEMENTED: 501,
    ErrorCode.INTERNAL: 500,
}


#: Errors HTTP tells apart more finely than their code does (both are INVALID_ARGUMENT).
_FINER: tuple[tuple[type[FerryError], int], ...] = (
    (PayloadTooLargeError, 413),
    (UnsupportedMediaTypeError, 415),
)


def status_of(error: FerryError) -> int:
    """The HTTP status of a ferry error."""
    for kind, status in _FINER:
        if isinstance(error, kind):
            return status
    return STATUS.get(error.code, 500)


def error_response(error: FerryError | str, status: int | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """Build the ``{"error": ...}`` response for a ferry error, or for a message and status.

    Args:
        error: the error, or a message (then ``status`` is required).
        status: overrides the status of the error's code.
        headers: extra headers (e.g. ``Allow``).
    """
    extra = dict(headers or {})
    if isinstance(error, FerryError):
        message = str(error)
        code = status if status is not None else status_of(error)
        if isinstance(error, RateLimitedError | UnavailableError):
            extra["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        elif code == 401:
            # RFC 9110 11.6.1: a 401 names the scheme the client should authenticate with.
            extra["WWW-Authenticate"] = 'Bearer realm="ferry"'
    else:
        message, code = error, status if status is not None else 400
    return Response(orjson.dumps({"error": message}), status_code=code,
                    media_type="application/json", headers=extra)


def internal_error_response(request_id: str) -> Response:
    """The 500 for an error ferry did not raise on purpose: it names the request id only."""
    return error_response(f"internal error; the server log has the details under request id "
                          f"{request_id}", 500)
