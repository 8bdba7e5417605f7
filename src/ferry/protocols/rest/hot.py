"""The inference routes' fast path: recognised by splitting the path once, answered as bytes.

For the seed network, Starlette's per-request machinery (the router's scan of every route's
regular expression, two exception-handling layers, ``Request`` and ``Response`` objects, the
body stream) costs several times what the model does. The inference routes
(``POST /predict[/{model}[/versions/{v}]]`` and ``POST /v2/models/{model}[/versions/{v}]/infer``)
are recognised here by splitting the path once (:func:`~ferry.protocols.rest.routes.
lane_match`, the route table's lane routes). A plain request — a ``Content-Length`` body
within the limit, JSON (or no ``Content-Type``) or V2 binary content, no
``Content-Encoding``; :meth:`~ferry.protocols.rest.head.Head.fast` — is answered by
:func:`answer` with the same functions the routes use (:func:`~ferry.protocols.rest.v2.
infer_body`, :func:`~ferry.protocols.rest.simple.predict_body`), so the answers are identical.
Anything else (compressed or chunked bodies, odd content types, bodies over the limit) goes to
the full route, which checks it and answers the 4xx. Other paths go to Starlette unchanged.

Two front doors use it: :class:`HotRoutes`, an ASGI middleware in front of Starlette's router
(any ASGI server), and :mod:`ferry.protocols.rest.http11`, ferry's HTTP/1.1 protocol, which
answers these routes without the ASGI machinery at all (what ``ferry serve`` runs).
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import cast

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferry.call import CallContext
from ferry.errors import FerryError, NotFoundError
from ferry.observability.logging import request_id as log_request_id
from ferry.protocols.rest.errors import internal_error_response
from ferry.protocols.rest.exchange import RestContext, refusal
from ferry.protocols.rest.head import BINARY_HEADER, Head
from ferry.protocols.rest.routes import Endpoint, Lane, lane_match
from ferry.protocols.rest.simple import predict_body
from ferry.protocols.rest.v2 import infer_body

__all__ = ["FALLBACK_HEADER", "HotRoutes", "answer", "answer_logged", "match"]

_log = logging.getLogger("ferry.rest")

Headers = list[tuple[bytes, bytes]]

#: Names the fallback (``model:version``) that answered in place of the version asked for
#: (the engine sets ``CallContext.fallback``): added here for ferry's HTTP/1.1 lane, by
#: the request-id middleware (app.py) for every answer of the ASGI app.
FALLBACK_HEADER = b"x-ferry-fallback"

_JSON = b"application/json"
_OCTETS = b"application/octet-stream"


#: Paths already matched, and their answers: a server sees few distinct inference paths.
#: Bounded in bytes, not keyed by unbounded client input: only paths up to _MATCHED_KEY
#: characters are kept, at most _MATCHED_MAX of them (emptied when full).
_MATCHED: dict[str, tuple[Lane, dict[str, str]] | None] = {}
_MATCHED_MAX = 1024
_MATCHED_KEY = 256


def match(path: str) -> tuple[Lane, dict[str, str]] | None:
    """The inference route ``path`` names, with its parameters; None for any other path.

    ``path`` is the percent-decoded path (the ASGI scope's ``path``): the parameters are
    taken from it as they are, never decoded a second time, so every door routes the same
    bytes the same way. The parameters dict is shared between calls for the same path: do
    not modify it.
    """
    try:
        return _MATCHED[path]
    except KeyError:
        pass
    found = lane_match(path)
    if len(path) <= _MATCHED_KEY:
        if len(_MATCHED) >= _MATCHED_MAX:
            _MATCHED.clear()
        _MATCHED[path] = found
    return found


_JSON_HEADERS: Headers = [(b"content-type", _JSON)]


async def answer(ctx: RestContext, call: CallContext, route: Lane, params: dict[str, str],
                 body: bytes, binary: str | None) -> tuple[int, Headers, bytes]:
    """Answer one plain inference request: status, headers and body, the request counted.

    ``binary`` is the request's ``Inference-Header-Content-Length``
    (:attr:`~ferry.protocols.rest.head.Head.binary`).
    Ferry errors become their ``{"error": ...}`` answers; anything else propagates (the
    caller answers 500 naming the request id).
    """
    start = perf_counter()
    v2 = route == "infer"
    model = params.get("model") or (None if v2 else ctx.engine.default_model())
    version = params.get("version")
    try:
        if model is None:
            raise NotFoundError("no default model to predict with; POST to /predict/{model}")
        if v2:
            payload, header_length, answered = await infer_body(
                ctx, call, model, version, body, binary)
        else:
            payload, answered = await predict_body(ctx, call, model, version, body)
            header_length = None
    except FerryError as error:
        response = refusal(ctx, model or "", error, start, version=version)
        return response.status_code, list(response.raw_headers), bytes(response.body)
    length = (b"content-length", b"%d" % len(payload))
    if header_length is None:
        out = [*_JSON_HEADERS, length]
    else:
        out = [(b"content-type", _OCTETS), (BINARY_HEADER, b"%d" % header_length), length]
    ctx.metrics.request(model=model, version=answered, protocol="rest", status="200",
                        seconds=perf_counter() - start)
    return 200, out, payload


async def answer_logged(ctx: RestContext, call: CallContext, route: Lane,
                        params: dict[str, str], body: bytes, binary: str | None
                        ) -> tuple[int, Headers, bytes]:
    """:func:`answer` under the call's request id, a 500 naming it for anything unexpected.

    What ferry's HTTP/1.1 protocol (http11.py) runs: the id is on every log
    line written meanwhile; the traceback of an unexpected error goes to the log, only the
    id to the client.
    """
    text = call.request_id
    token = log_request_id.set(text)
    try:
        status, headers, payload = await answer(ctx, call, route, params, body, binary)
        if call.fallback is not None:
            headers = [*headers, (FALLBACK_HEADER, call.fallback.encode())]
        return status, headers, payload
    except Exception:
        _log.exception("unhandled error in request %s", text)
        response = internal_error_response(text)
        return response.status_code, list(response.raw_headers), bytes(response.body)
    finally:
        log_request_id.reset(token)


class HotRoutes:
    """ASGI middleware: the inference routes' fast path (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, ctx: RestContext, predict: Endpoint,
                 infer: Endpoint) -> None:
        self.app = app
        self.ctx = ctx
        self.endpoints: dict[Lane, Endpoint] = {"predict": predict, "infer": infer}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one request: an inference route directly, anything else onward."""
        if scope["type"] == "http" and scope["method"] == "POST":
            found = match(scope["path"])
            if found is not None:
                route, params = found
                state = scope["state"]  # RequestIdMiddleware's, outside this one
                head: Head = state["head"]
                if head.fast(binary=route == "infer") and \
                        cast(int, head.length) <= self.ctx.max_body_bytes:
                    body = await _read(receive)
                    status, headers, payload = await answer(
                        self.ctx, state["call"], route, params, body, head.binary)
                    await send({"type": "http.response.start", "status": status,
                                "headers": headers})
                    await send({"type": "http.response.body", "body": payload})
                    return
                scope["path_params"] = dict(params)
                response = await self.endpoints[route](Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _read(receive: Receive) -> bytes:
    """The whole body (the server holds it to ``Content-Length``, checked against the limit).

    Raises:
        ClientDisconnect: the client left mid-body (the request-id middleware ends quietly).
    """
    chunks: list[bytes] = []
    more = True
    while more:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
