"""The one exception tree of ferry.

Every error ferry raises on purpose is a :class:`FerryError`. Each class carries an
:class:`ErrorCode`; the adapters (REST, gRPC, the CLI) each own a table from code to their
own status, so the core never learns HTTP.

```
FerryError(message, *, hint=None)
├── InputError                  INVALID_ARGUMENT  a request or command argument is wrong
│   ├── PayloadTooLargeError                      a request body above the server's limit
│   └── UnsupportedMediaTypeError                 a content type or encoding not read there
├── NotFoundError               NOT_FOUND         no such model, version, input or file
├── RateLimitedError            RESOURCE_EXHAUSTED
├── DeadlineExceededError       DEADLINE_EXCEEDED
├── UnavailableError            UNAVAILABLE       not ready, overloaded, circuit open
├── AuthenticationError         UNAUTHENTICATED
├── PermissionDeniedError       PERMISSION_DENIED
├── ArtifactError               INVALID_ARGUMENT  a model file cannot be taken in as given
│   ├── UnsupportedFormatError
│   ├── ConversionError
│   ├── ParityError
│   ├── IntegrityError          DATA_LOSS         a stored file no longer matches its hash
│   ├── UntrustedArtifactError
│   └── MissingDependencyError  FAILED_PRECONDITION  an optional extra is not installed
├── ConfigError                 INVALID_ARGUMENT  settings or per-model config are invalid
└── InternalError               INTERNAL          a bug: the message carries a request id
```
"""

from __future__ import annotations

import enum

__all__ = [
    "NAME_MAX",
    "ArtifactError",
    "AuthenticationError",
    "ConfigError",
    "ConversionError",
    "DeadlineExceededError",
    "ErrorCode",
    "FerryError",
    "InputError",
    "IntegrityError",
    "InternalError",
    "MissingDependencyError",
    "NotFoundError",
    "ParityError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "UnavailableError",
    "UnsupportedFormatError",
    "UnsupportedMediaTypeError",
    "UntrustedArtifactError",
    "quote_name",
]

#: The most characters of a client-given name (model, version, input, output) that an error
#: message quotes. Every valid model name (1-128 characters) is shown whole; a longer name is
#: cut, so that a 100,000-character name cannot turn NOT_FOUND into a gRPC metadata overflow.
NAME_MAX = 128


def quote_name(name: str) -> str:
    """``repr(name)`` for a message, cut after :data:`NAME_MAX` characters saying how many more.

    The count stays outside the quotes, so it cannot be mistaken for part of the name.
    """
    if len(name) <= NAME_MAX:
        return repr(name)
    return f"{name[:NAME_MAX]!r}...({len(name) - NAME_MAX} more characters)"


class ErrorCode(enum.Enum):
    """Transport-free error codes; named after gRPC's, which are the most precise."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    DATA_LOSS = "DATA_LOSS"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


class FerryError(Exception):
    """Root of every error ferry raises on purpose.

    Args:
        message: what failed, where, expected vs. got. Shown to users verbatim.
        hint: what to try next, if there is something useful to say.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} ({self.hint})"


class InputError(FerryError):
    """A request, input tensor or command argument is wrong."""

    code = ErrorCode.INVALID_ARGUMENT


class PayloadTooLargeError(InputError):
    """A request body is larger than the server accepts (HTTP answers 413, not 400)."""


class UnsupportedMediaTypeError(InputError):
    """A request's content type or encoding is not one the endpoint reads (HTTP 415)."""


class NotFoundError(FerryError):
    """A model, version, tensor or file that was named does not exist."""

    code = ErrorCode.NOT_FOUND


class RateLimitedError(FerryError):
    """A queue or rate limit is full; the caller should retry after ``retry_after`` s."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, retry_after: float = 1.0, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class DeadlineExceededError(FerryError):
    """The request's deadline passed before it could be answered."""

    code = ErrorCode.DEADLINE_EXCEEDED


class UnavailableError(FerryError):
    """The server or model cannot answer now (not ready, draining, circuit open)."""

    code = ErrorCode.UNAVAILABLE

    def __init__(self, message: str, *, retry_after: float = 1.0, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class AuthenticationError(FerryError):
    """No credentials, or credentials that do not check out."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDeniedError(FerryError):
    """Valid credentials that lack the role for this action."""

    code = ErrorCode.PERMISSION_DENIED


class ArtifactError(FerryError):
    """A model file or directory cannot be taken in as given."""

    code = ErrorCode.INVALID_ARGUMENT


class UnsupportedFormatError(ArtifactError):
    """The file is of no format ferry reads, or not of the format that was named."""


class ConversionError(ArtifactError):
    """The source model loaded but could not be converted to the target artifact."""


class ParityError(ArtifactError):
    """The converted model does not answer like the source within the tolerance."""


class IntegrityError(ArtifactError):
    """A stored file is missing, unexpected, or no longer matches its recorded sha256."""

    code = ErrorCode.DATA_LOSS


class UntrustedArtifactError(ArtifactError):
    """Loading the file would run code from it, and the operator has not trusted it."""


class MissingDependencyError(ArtifactError):
    """An optional extra is needed; the message names the exact ``pip install`` line."""

    code = ErrorCode.FAILED_PRECONDITION

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the optional dependencies of ferry[{extra}], "
            "which are not installed",
            hint=f"install them with: pip install 'ferry[{extra}]'",
        )
        self.extra = extra


class ConfigError(FerryError):
    """A setting or a per-model configuration value is invalid."""

    code = ErrorCode.INVALID_ARGUMENT


class InternalError(FerryError):
    """A bug in ferry. Clients see the request id; the log keeps the traceback."""

    code = ErrorCode.INTERNAL
