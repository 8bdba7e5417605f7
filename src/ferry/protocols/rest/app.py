"""The REST front end: one Starlette app over the engine facade.

``create_app(engine)`` builds the ASGI app; it never starts or stops the engine
(``ferry.server`` does). The hot routes take raw bodies and write with orjson: no pydantic,
no per-request model classes, no middleware beyond the request id.

Every answer carries ``X-Request-ID``: the client's own (if it is short printable ASCII) or
a fresh one; an inference answer given by a model's configured fallback carries
``X-Ferry-Fallback: <model>:<version>`` (docs/serving.md, circuit breakers). Every error
is ``{"error": ...}`` with a 4xx status for anything the client can fix; an unexpected
exception becomes a 500 naming the request id, and its traceback goes to the log, never to
the client.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferry import console
from ferry.call import INTERNAL
from ferry.errors import FerryError
from ferry.observability.logging import request_id as log_request_id
from ferry.protocols.rest import routes, simple, tfserving, v2
from ferry.protocols.rest.errors import error_response, internal_error_response
from ferry.protocols.rest.exchange import (
    RestContext,
    fresh_id,
    json_response,
    peer_of,
    rest_call,
)
from ferry.protocols.rest.head import read_head
from ferry.protocols.rest.hot import FALLBACK_HEADER, HotRoutes
from ferry.protocols.rest.limits import HttpLimits, head_refusal

if TYPE_CHECKING:
    from ferry.engine import Engine

__all__ = ["RequestIdMiddleware", "create_app"]

_log = logging.getLogger("ferry.rest")
_HEADER = b"x-request-id"


def create_app(engine: Engine, *, max_body_bytes: int = 64 << 20,
               limits: HttpLimits | None = None, console_on: bool = True) -> Starlette:
    """Build the REST app over ``engine``.

    Args:
        engine: the started (or starting) engine; health routes report its state.
        max_body_bytes: the largest request body accepted (413 above it), after inflating
            a compressed body.
        limits: the head bounds (size and count of header fields, 431 past them) the app
            checks itself, for ASGI servers that do not (ferry's protocol checks them first).
        console_on: serve the web console at ``/console`` (ferry.console); False answers
            its routes 404.
    """
    ctx = RestContext(engine=engine, metrics=engine.metrics, max_body_bytes=max_body_bytes)
    document = routes.document(engine.server_metadata(INTERNAL).version)

    async def metrics(request: Request) -> Response:
        body, content_type = ctx.metrics.render()
        return Response(body, media_type=content_type)

    async def openapi(request: Request) -> Response:
        return json_response(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(console.DOCS_HTML, headers=console.DOCS_HEADERS)

    handlers = {**v2.handlers(ctx), **simple.handlers(ctx), **tfserving.handlers(ctx),
                "ops.metrics": metrics, "ops.openapi": openapi, "ops.docs": docs,
                **console.handlers(engine, enabled=console_on, json=json_response)}
    # One route table (routes.py) gives the app its routes, the lane its matcher, the
    # OpenAPI document its paths.
    app = Starlette(routes=routes.starlette_routes(handlers), exception_handlers={
        FerryError: _ferry_error, HTTPException: _http_error})
    # Inner: the inference routes skip the router's scan (same endpoints, see hot.py).
    app.add_middleware(HotRoutes, ctx=ctx, predict=handlers["simple.predict"],
                       infer=handlers["v2.infer"])
    # Outermost, so that even Starlette's own 404/405 answers carry the request id.
    app.add_middleware(RequestIdMiddleware, limits=limits or HttpLimits())
    # For ferry's HTTP/1.1 protocol (http11.py), whose inference lane answers the same routes.
    app.state.rest_context = ctx
    return app


async def _ferry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FerryError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /openapi.json"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(message, exc.status_code, dict(exc.headers or {}))


class RequestIdMiddleware:
    """Read the head, build the call context, answer ``X-Request-ID``, and catch crashes.

    The door of every request that reaches the app, under ferry's HTTP/1.1 protocol or any
    ASGI server: the head is read once (:func:`~ferry.protocols.rest.head.read_head`) into
    ``scope["state"]["head"]``, the call context built from it
    (:func:`~ferry.protocols.rest.exchange.rest_call`) into ``scope["state"]["call"]``,
    and the request id (the client's ``X-Request-ID`` or a fresh one) into
    ``scope["state"]["request_id"]``, for the handlers and the logs. A verified client
    certificate's common name comes from the ASGI TLS extension
    (``scope["extensions"]["tls"]["client_cert_name"]``), which ferry's HTTP/1.1 protocol
    sets on TLS connections. A handler that
    raises something unexpected is answered with a JSON 500 naming the id (if no response
    has started), and the traceback is logged under that id.
    """

    def __init__(self, app: ASGIApp, limits: HttpLimits | None = None) -> None:
        self.app = app
        self.limits = limits or HttpLimits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = read_head(scope["headers"])
        rid = head.request_id or fresh_id()
        state = scope.setdefault("state", {})
        state["request_id"] = rid.decode("ascii")
        state["head"] = head
        extensions = scope.get("extensions")
        tls = extensions.get("tls") if extensions else None
        certificate = None
        if tls and tls.get("client_cert_name"):
            # Imported here: ferry.security needs the security extra, TLS or not.
            from ferry.security.tls import common_name

            certificate = common_name(tls["client_cert_name"])
        state["call"] = call = rest_call(rid, "asgi", peer_of(scope.get("client")), head,
                                         certificate)
        refused = head_refusal(scope["headers"], self.limits)
        if refused is not None:  # only under a server with looser bounds than ferry's
            await error_response(refused, 431, {"x-request-id": rid.decode("ascii")})(
                scope, receive, send)
            return
        # Every log line written while this request is handled carries its id.
        token = log_request_id.set(rid.decode("ascii"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), (_HEADER, rid)]
                if call.fallback is not None:  # set by the engine (served names only)
                    message["headers"].append((FALLBACK_HEADER, call.fallback.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            return  # the client left mid-body: nobody to answer, nothing went wrong here
        except Exception:
            _log.exception("unhandled error in request %s", rid.decode("ascii"))
            if started:
                raise
            response = internal_error_response(rid.decode("ascii"))
            await response(scope, receive, send_with_id)
        finally:
            log_request_id.reset(token)
