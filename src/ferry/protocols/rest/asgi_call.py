"""One HTTP request through the ASGI app, with its body already read and its answer collected.

ferry's HTTP/1.1 protocol (:mod:`~ferry.protocols.rest.http11`) answers the plain inference
requests itself and gives every other request (health, metadata, repository, metrics,
docs, compressed or chunked inference bodies) to the Starlette app here. The body is read
whole first (it is bounded by ``max_body_bytes``), and the app's answer is collected whole
before it is written, so an answer is always one write with a ``content-length``: none of
ferry's routes streams, and a whole answer can never interleave with the next one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message

from ferry.protocols.rest.wire import Headers

__all__ = ["AsgiAnswer", "call_app"]

_log = logging.getLogger("ferry.rest")

#: An answer of the app: status, headers, body.
AsgiAnswer = tuple[int, Headers, bytes]


class _AppError(Exception):
    """The app broke the ASGI contract (a body before the start, a second answer)."""


async def call_app(app: ASGIApp, scope: dict[str, Any], body: bytes,
                   gone: asyncio.Event) -> AsgiAnswer | None:
    """Run ``app`` for one request; its whole answer, or None if the app answered nothing.

    ``gone`` is this call's own event: the caller sets it when the connection is lost, and
    it is set here when the app returns. ``receive()`` gives the body once, then waits for
    it and reports a disconnect, as the ASGI spec asks. An app that raises
    before answering gets None back here (the caller answers 500); the exception is logged.
    """
    delivered = False
    status = 0
    headers: Headers = []
    chunks: list[bytes] = []
    complete = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered and not gone.is_set():
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, headers, complete
        kind = message["type"]
        if kind == "http.response.start" and not status:
            status = int(message["status"])
            headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", ())]
        elif kind == "http.response.body" and status and not complete:
            chunks.append(bytes(message.get("body", b"")))
            complete = not message.get("more_body", False)
        elif not gone.is_set():
            raise _AppError(f"unexpected ASGI message {kind!r}")

    try:
        await app(scope, receive, send)
    except Exception:
        _log.exception("the ASGI app failed on %s %s", scope["method"],
                       scope["path"][:200])
        return None
    finally:
        gone.set()  # a receive() still waiting ends now
    if not complete:
        if status:
            _log.error("the ASGI app did not finish its answer to %s %s", scope["method"],
                       scope["path"][:200])
        return None
    return status, headers, chunks[0] if len(chunks) == 1 else b"".join(chunks)
