"""The web console at ``/console``: see the models, try them, watch them live, load/unload.

Server-rendered pages (:mod:`ferry.console.pages`) with a little JavaScript each, assets
shipped in the package (:mod:`ferry.console.assets`: no CDN, works offline, and so does
``/docs``), and two JSON endpoints of its own:

* ``GET /console/api/models`` (:mod:`ferry.console.catalog`): models, versions, manifests'
  figures, instances and request counts;
* ``GET /console/api/live`` (:mod:`ferry.console.live`): rates and percentiles of the last
  second, read from the metrics the server keeps anyway, only when someone watches.

Both call the engine under the request's call context, so its policy chain applies as on
every other route (the repository index's check: a ``read`` grant on ``*``); trying a model
and loading or unloading one go through the V2 routes themselves, so they need ``infer`` and
``admin`` grants there. The routes are part of the one route table
(:mod:`ferry.protocols.rest.routes`); ``console = false`` (``FERRY_CONSOLE=false``) makes the
pages and endpoints answer 404, while ``/docs`` keeps its renderer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ferry.console.assets import asset
from ferry.console.catalog import Catalog
from ferry.console.live import LiveView, read_metrics
from ferry.console.pages import DOCS_HTML, render
from ferry.errors import NotFoundError

if TYPE_CHECKING:
    from ferry.engine import Engine

__all__ = ["DOCS_HEADERS", "DOCS_HTML", "handlers"]

Endpoint = Callable[[Request], Awaitable[Response]]

#: What every console page answers with: its own files only, no framing by other sites.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
#: ``/docs``: Redoc needs inline styles and a worker; its footer's logo (from the internet)
#: is refused here, so the page asks nothing of any other host.
DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; worker-src 'self' blob:; "
                               "font-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
#: The one asset served with the console off: /docs needs it.
_DOCS_ASSET = "redoc.standalone.js"


def handlers(engine: Engine, *, enabled: bool = True,
             json: Callable[[object], Response]) -> dict[str, Endpoint]:
    """The console's handlers by the names the route table gives them.

    Args:
        engine: the engine whose models and metrics the console shows.
        enabled: False answers every console route 404 (``console = false``), except the
            asset ``/docs`` needs.
        json: how the REST app writes a JSON answer (its ``json_response``).
    """
    catalog = Catalog(engine)
    live = LiveView(engine.metrics)

    def off() -> NotFoundError:
        return NotFoundError("the console is turned off on this server (console = false)")

    def page(name: str) -> Endpoint:
        body = render(name)

        async def answer(request: Request) -> Response:
            if not enabled:
                raise off()
            return HTMLResponse(body, headers=_PAGE_HEADERS)

        return answer

    async def models(request: Request) -> Response:
        if not enabled:
            raise off()
        return json(catalog.catalog(request.state.call, read_metrics(engine.metrics)))

    async def figures(request: Request) -> Response:
        if not enabled:
            raise off()
        # The policy check: the live figures show every model, as the index lists them.
        engine.repository_index(request.state.call, ready_only=True)
        return json(live.figures(engine.served_models()))

    async def static(request: Request) -> Response:
        name = request.path_params["asset"]
        found = asset(name) if enabled or name == _DOCS_ASSET else None
        if found is None:
            raise NotFoundError(f"no console asset {name[:100]!r}")
        headers = {"ETag": found.etag, "Cache-Control": "public, max-age=3600",
                   "X-Content-Type-Options": "nosniff"}
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)

    return {"console.models": page("models"), "console.try": page("try"),
            "console.live": page("live"), "console.admin": page("admin"),
            "console.api_models": models, "console.api_live": figures,
            "console.static": static}
