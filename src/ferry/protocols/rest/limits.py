"""The bounds of one REST connection: what a client may make the server hold, and for how long.

Every number here bounds something a client feeds (a buffer, a queue, a timer); none is
reached by a well-behaved client. ``docs/serving.md`` lists them with their reasons; a
request past one is answered with the status named beside it, then the connection closes
(after the answers to the requests before it, in order).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HttpLimits", "head_refusal"]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Per-connection limits of ferry's HTTP/1.1 protocol (:mod:`~ferry.protocols.rest.http11`).

    The body limit is the server's ``max_body_bytes`` (``RestContext``), answered 413 from
    the head alone (``Content-Length``) or as soon as a chunked body passes it. The idle
    keep-alive timeout is uvicorn's ``timeout_keep_alive`` (``ferry serve``: the
    ``http_keep_alive`` setting), which the protocol reads from uvicorn's config.

    Under a stock ASGI server the same head bounds (size and count of header fields) are
    checked by the app itself (:func:`head_refusal`), after the server's own.
    """

    #: Longest request target (path and query), in bytes: 414 beyond it.
    max_target: int = 8 << 10
    #: Largest request head (request line and header fields), in bytes: 431 beyond it.
    max_head: int = 16 << 10
    #: Most header fields in one head (trailers of a chunked body count apart): 431 beyond it.
    max_headers: int = 100
    #: Connections open at once on the port (per process). A connection accepted past it is
    #: closed at once, before a byte of it is read: the cheapest refusal there is (no
    #: parser, no timer, no answer to write), and one a client or load balancer retries.
    max_connections: int = 4096
    #: Bytes of pipelined requests read ahead of the one being answered; past it the
    #: connection stops reading until the client has read its answers (back-pressure).
    read_ahead: int = 256 << 10
    #: Complete requests held ahead of the one being answered before reading pauses.
    max_pipelined: int = 64
    #: Seconds a request head may take to arrive whole, from its first byte: 408 after.
    head_timeout: float = 10.0
    #: Seconds a request body may go without a new byte while it is read: 408 after.
    body_timeout: float = 30.0
    #: Seconds an answer may wait for a client that does not read it: the connection closes.
    write_timeout: float = 30.0
    #: Seconds a refused connection still reads (and drops) what its client sends, so that
    #: the refusal is read before the connection closes (a close with unread bytes resets
    #: it, and a reset can destroy the refusal in flight).
    linger: float = 2.0


def head_refusal(fields: list[tuple[bytes, bytes]], limits: HttpLimits) -> str | None:
    """Why a head read by another server breaks ``limits`` (431), or None when it does not.

    ferry's HTTP/1.1 protocol counts while it reads; an ASGI app under another server (whose
    own bounds differ: uvicorn with h11 takes a 16 KiB head of any number of fields) sees
    the fields only once the head is whole, and checks them here.
    """
    if len(fields) > limits.max_headers:
        return (f"the request has {len(fields)} header fields, more than the limit of "
                f"{limits.max_headers}")
    size = 0
    for name, value in fields:
        size += len(name) + len(value) + 4  # "name: value\r\n", as on the wire
    if size > limits.max_head:
        return f"the request head is larger than the limit of {limits.max_head} bytes"
    return None
