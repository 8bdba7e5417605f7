"""ferry errors -> gRPC statuses: every code mapped, never UNKNOWN, retry hints carried."""

from __future__ import annotations

import grpc
import pytest

from ferry import errors
from ferry.protocols.grpc.errors import STATUS, status_of


def test_every_error_code_has_a_status_and_none_is_unknown() -> None:
    assert set(STATUS) == set(errors.ErrorCode)
    assert grpc.StatusCode.UNKNOWN not in STATUS.values()
    assert all(STATUS[code].name == code.name for code in errors.ErrorCode)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InputError("input 'x': bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFoundError("unknown model 'm'"), grpc.StatusCode.NOT_FOUND),
        (errors.DeadlineExceededError("too late"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.ConfigError("bad setting"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.IntegrityError("hash"), grpc.StatusCode.DATA_LOSS),
        (errors.MissingDependencyError("x", "keras"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.InternalError("bug, request id 1"), grpc.StatusCode.INTERNAL),
        (errors.PermissionDeniedError("no"), grpc.StatusCode.PERMISSION_DENIED),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.name,
)
def test_errors_map_to_the_status_of_their_code(error: errors.FerryError, code) -> None:
    status = status_of(error)
    assert status.code is code
    assert status.details == str(error)
    assert status.trailing_metadata == ()


def test_a_full_queue_says_when_to_retry() -> None:
    status = status_of(errors.RateLimitedError("queue of 'm' is full (64)", retry_after=0.25))
    assert status.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue of 'm' is full (64)" in status.details and "retry after 0.25 s" in status.details
    assert dict(status.trailing_metadata) == {"retry-after": "1", "grpc-retry-pushback-ms": "250"}


def test_unavailable_carries_its_retry_hint_too() -> None:
    status = status_of(errors.UnavailableError("model 'm' is loading", retry_after=3))
    assert status.code is grpc.StatusCode.UNAVAILABLE
    assert dict(status.trailing_metadata)["retry-after"] == "3"
