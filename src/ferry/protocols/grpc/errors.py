"""ferry's errors as gRPC statuses: one table from :class:`~ferry.errors.ErrorCode`.

Each code maps to the gRPC status of the same meaning (ErrorCode is named after gRPC's
codes), so a client sees INVALID_ARGUMENT for a bad tensor, NOT_FOUND for an unknown model,
RESOURCE_EXHAUSTED for a full queue and so on; an error ferry raises on purpose is never
UNKNOWN. Refusals that invite a retry (a full queue, a model not ready) carry the delay in
the message and in two trailing metadata keys: ``retry-after`` (seconds, as the HTTP header)
and ``grpc-retry-pushback-ms``, which gRPC's own retry machinery honours.
"""

from __future__ import annotations

import math

import grpc

from ferry.errors import ErrorCode, FerryError, RateLimitedError, UnavailableError

__all__ = ["STATUS", "Status", "status_of"]

#: ferry error code -> gRPC status code. Complete: a test checks every ErrorCode is here.
STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.DATA_LOSS: grpc.StatusCode.DATA_LOSS,
    ErrorCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}

Metadata = tuple[tuple[str, str], ...]


class Status:
    """What the servicer aborts a call with: code, details and trailing metadata."""

    __slots__ = ("code", "details", "trailing_metadata")

    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Metadata = ()):
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def status_of(error: FerryError) -> Status:
    """Return the gRPC status for a ferry error.

    The details are the error's own text (message and hint); for errors with a
    ``retry_after``, they also say when to retry, and the trailing metadata carries it.
    """
    code = STATUS.get(error.code, grpc.StatusCode.INTERNAL)
    details = str(error)
    if isinstance(error, RateLimitedError | UnavailableError):
        seconds = max(error.retry_after, 0.0)
        details = f"{details}; retry after {seconds:g} s"
        return Status(code, details, (
            ("retry-after", str(max(1, math.ceil(seconds)))),
            ("grpc-retry-pushback-ms", str(round(seconds * 1000))),
        ))
    return Status(code, details)
