"""A direct dispatcher for the inference routes, in front of Starlette's router.

Starlette's router tries every route's regular expression in turn and wraps each endpoint
in two exception-handling layers; for the seed network that bookkeeping costs about as
much as the model. The inference routes (``POST /predict[/{model}[/versions/{v}]]`` and
``POST /v2/models/{model}[/versions/{v}]/infer``) are recognised here by splitting the path
once, and their endpoints (the same functions the router holds, so behaviour is identical)
are called directly. Every other request goes on to Starlette unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HotRoutes"]

Endpoint = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    """ASGI middleware: serve the inference routes without the router's per-route scan."""

    def __init__(self, app: ASGIApp, *, predict: Endpoint, infer: Endpoint) -> None:
        self.app = app
        self.predict = predict
        self.infer = infer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one request: an inference route directly, anything else onward."""
        if scope["type"] == "http" and scope["method"] == "POST":
            found = self._match(scope["path"])
            if found is not None:
                endpoint, params = found
                scope["path_params"] = params
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _match(self, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        parts = path.split("/")
        # "/predict" -> ["", "predict"]; "/v2/models/m/infer" -> ["", "v2", "models", "m", "infer"]
        if len(parts) < 2 or "" in parts[1:]:
            return None
        if parts[1] == "predict":
            rest = parts[2:]
            if not rest:
                return self.predict, {}
            if len(rest) == 1:
                return self.predict, {"model": unquote(rest[0])}
            if len(rest) == 3 and rest[1] == "versions":
                return self.predict, {"model": unquote(rest[0]), "version": unquote(rest[2])}
            return None
        if parts[1] == "v2" and len(parts) >= 5 and parts[2] == "models" and parts[-1] == "infer":
            rest = parts[3:-1]
            if len(rest) == 1:
                return self.infer, {"model": unquote(rest[0])}
            if len(rest) == 3 and rest[1] == "versions":
                return self.infer, {"model": unquote(rest[0]), "version": unquote(rest[2])}
        return None
