"""Reading request bodies safely: size limit, content type, content encoding, JSON.

A body larger than the limit is refused with 413 before it is read when ``Content-Length``
says so, and while it streams when it does not (chunked uploads). Compressed bodies
(``Content-Encoding: gzip`` or ``deflate``, which tritonclient can send) are inflated with the
same limit on the inflated size, so a small "zip bomb" cannot fill the memory.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request

from ferry.errors import InputError, PayloadTooLargeError, UnsupportedMediaTypeError
from ferry.protocols.rest.head import JSON, OCTETS, media

__all__ = ["check_content_type", "parse_json", "read_body", "too_large"]

# zlib window bits: 16+15 = a gzip stream; 15 = zlib-wrapped deflate, the HTTP meaning.
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


async def read_body(request: Request, limit: int) -> bytes:
    """Read the whole body of ``request``, refusing more than ``limit`` bytes.

    Raises:
        PayloadTooLargeError: ``Content-Length`` or the bytes received exceed the limit.
        UnsupportedMediaTypeError: an unsupported ``Content-Encoding``.
        InputError: a malformed ``Content-Length`` or a corrupt compressed body.
    """
    headers = request.headers
    declared = headers.get("content-length")
    if declared is not None:
        if not (0 < len(declared) <= 18 and declared.isascii() and declared.isdigit()):
            raise InputError(f"Content-Length {declared[:40]!r} is not a number of bytes")
        if int(declared) > limit:
            raise too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit, streamed=True)
        chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = headers.get("content-encoding")
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        body = _inflate(body, encoding.strip().lower(), limit)
    return body


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise UnsupportedMediaTypeError(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or identity")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InputError(f"the {encoding} body cannot be inflated: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise too_large(len(out), limit, streamed=True)
    return out


def too_large(size: int, limit: int, *, streamed: bool = False) -> PayloadTooLargeError:
    """The 413 error for a body of ``size`` bytes (``streamed``: more than ``limit``)."""
    got = f"more than {limit}" if streamed else str(size)
    return PayloadTooLargeError(
        f"request body of {got} bytes is larger than the limit of {limit} bytes",
        hint="send fewer rows per request, or raise the server's max body size")


def check_content_type(request: Request, *, binary: bool = False) -> None:
    """Refuse a body that is not JSON (or, where ``binary``, JSON + binary tensors).

    A missing ``Content-Type`` is accepted: tritonclient sends none. The rule is
    :func:`~ferry.protocols.rest.head.media`'s, which the fast path applies too.

    Raises:
        UnsupportedMediaTypeError: any other media type, naming what to send instead.
    """
    value = request.headers.get("content-type")
    if value is None:
        return
    kind = media(value.encode("latin-1"))
    if kind == JSON or (binary and kind == OCTETS):
        return
    media_type = value.split(";", 1)[0].strip().lower()
    allowed = "application/json" + (" or application/octet-stream (binary tensor data)"
                                    if binary else "")
    raise UnsupportedMediaTypeError(
        f"Content-Type {media_type!r} is not accepted here; send {allowed}",
        hint="with curl: -H 'Content-Type: application/json'")


def parse_json(body: bytes | memoryview, *, what: str = "request body") -> Any:
    """Parse JSON (orjson: fast, strict UTF-8, depth-limited to 1024 levels).

    Raises:
        InputError: empty or malformed JSON, naming the line and column.
    """
    if not body:
        raise InputError(f"empty {what}: expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"malformed JSON in the {what}: {exc}") from None
