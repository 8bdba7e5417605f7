"""HTTP/1.1 answers as bytes: one buffer per answer, for a single write.

Writing an answer is the easy half of HTTP/1.1 (the hard half, reading requests, is llhttp's:
see :mod:`~ferry.protocols.rest.http11`). Each answer is built whole: status line, the
server's default headers (``date``, ``server``), the answer's own, then the body, so it goes
out in one ``write`` and never interleaves with another answer on the same connection.
"""

from __future__ import annotations

import http
import re

from starlette.responses import Response

__all__ = ["CONTINUE", "Headers", "answer_bytes", "response_bytes", "status_line",
           "unsafe_header"]

Headers = list[tuple[bytes, bytes]]

#: The interim answer to ``Expect: 100-continue``.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_STATUS_LINE = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in http.HTTPStatus
}
_REQUEST_ID = b"x-request-id"
_CLOSE = b"connection: close\r\n"
# What may not appear in a header name (RFC 9110 token) or value (no CR, LF or NUL): an app
# that put client input into a header must not be able to split the answer.
_BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>`` with its CRLF (an empty reason for unknown codes)."""
    line = _STATUS_LINE.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


def unsafe_header(headers: Headers) -> bool:
    """True when a header name is not a token or a value holds CR, LF or NUL."""
    return any(_BAD_NAME.search(name) or _BAD_VALUE.search(value) for name, value in headers)


def answer_bytes(status: int, default_headers: Headers, headers: Headers, payload: bytes,
                 rid: bytes | None, *, close: bool) -> bytes:
    """A whole answer: status line, default headers, ``headers``, the request id, the body.

    ``rid`` is added as ``x-request-id`` (None: ``headers`` carries it already);
    ``connection: close`` is added when the connection closes after this answer.
    ``headers`` must frame ``payload`` (``content-length``).
    """
    parts = [status_line(status)]
    for name, value in (*default_headers, *headers):
        parts += (name, b": ", value, b"\r\n")
    if rid is not None:
        parts += (_REQUEST_ID, b": ", rid, b"\r\n")
    if close:
        parts.append(_CLOSE)
    parts += (b"\r\n", payload)
    return b"".join(parts)


def response_bytes(response: Response, default_headers: Headers, rid: bytes, *,
                   close: bool) -> bytes:
    """A whole answer from a Starlette response built in memory (an error answer, say).

    The error answers come from :mod:`~ferry.protocols.rest.errors`, the one place that
    shapes ``{"error": ...}``, whichever path answers.
    """
    return answer_bytes(response.status_code, default_headers, list(response.raw_headers),
                        bytes(response.body), rid, close=close)
