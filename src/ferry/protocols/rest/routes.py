"""The REST route table: the one declaration every REST door and document is made from.

Each :class:`RouteSpec` names a method, a path template, the handler that answers it and,
for the inference routes, the lane that may answer a plain request without the ASGI
machinery. From this table come:

* the Starlette routes of the app (:func:`starlette_routes`, ``create_app``),
* the inference lane's matcher (:func:`lane_match`, used by ferry's HTTP/1.1 protocol and
  the ``HotRoutes`` middleware),
* the OpenAPI document (:func:`document`),
* the route table of ``docs/rest.md`` (:func:`docs_table`; a test keeps the page in step).

So a route added here is served, fast-pathed, documented and listed at once, and no door
can know a route another lacks. Path parameters are matched the way Starlette matches them
(one non-empty segment each) on the percent-decoded path, which is never decoded again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ferry.protocols.rest.openapi import openapi_document

__all__ = ["ROUTES", "Lane", "RouteSpec", "docs_table", "document", "lane_match",
           "starlette_routes"]

Endpoint = Callable[[Request], Awaitable[Response]]

#: Which inference lane answers a route's plain requests: "infer" (V2) or "predict".
Lane = Literal["infer", "predict"]

V2 = "Open Inference Protocol (KServe V2)"
REPOSITORY = "Triton's model repository extension"
SIMPLE = "The seed's route"
TF_SERVING = "TensorFlow Serving"
OPERATIONS = "Operations"
CONSOLE = "The web console"


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One route: ``method path`` answered by ``handler`` (a key of the handlers mapping)."""

    method: str
    path: str
    handler: str
    api: str
    lane: Lane | None = None
    summary: str | None = None  # the OpenAPI summary, when not the handler's


_MODEL = "/v2/models/{model}"
_VERSIONED = "/v2/models/{model}/versions/{version}"

#: Every REST route, inference first (Starlette tries routes in order).
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", f"{_MODEL}/infer", "v2.infer", V2, lane="infer"),
    RouteSpec("POST", f"{_VERSIONED}/infer", "v2.infer", V2, lane="infer"),
    RouteSpec("GET", "/v2/health/live", "v2.live", V2),
    RouteSpec("GET", "/v2/health/ready", "v2.ready", V2),
    RouteSpec("GET", "/v2", "v2.server_metadata", V2),
    RouteSpec("GET", _MODEL, "v2.model_metadata", V2),
    RouteSpec("GET", _VERSIONED, "v2.model_metadata", V2),
    RouteSpec("GET", f"{_MODEL}/ready", "v2.model_ready", V2),
    RouteSpec("GET", f"{_VERSIONED}/ready", "v2.model_ready", V2),
    RouteSpec("POST", "/v2/repository/index", "v2.repository_index", REPOSITORY),
    RouteSpec("POST", "/v2/repository/models/{model}/load", "v2.load", REPOSITORY),
    RouteSpec("POST", "/v2/repository/models/{model}/unload", "v2.unload", REPOSITORY),
    RouteSpec("POST", "/predict", "simple.predict", SIMPLE, lane="predict",
              summary="Predict with the default model"),
    RouteSpec("POST", "/predict/{model}", "simple.predict", SIMPLE, lane="predict",
              summary="Predict with a model"),
    RouteSpec("POST", "/predict/{model}/versions/{version}", "simple.predict", SIMPLE,
              lane="predict", summary="Predict with a model version"),
    RouteSpec("POST", "/v1/models/{model}:predict", "tfserving.predict", TF_SERVING),
    RouteSpec("POST", "/v1/models/{model}/versions/{version}:predict", "tfserving.predict",
              TF_SERVING, summary="TensorFlow Serving predict (one version)"),
    RouteSpec("GET", "/v1/models/{model}", "tfserving.status", TF_SERVING),
    RouteSpec("GET", "/v1/models/{model}/versions/{version}", "tfserving.status", TF_SERVING,
              summary="Model version status"),
    RouteSpec("GET", "/metrics", "ops.metrics", OPERATIONS),
    RouteSpec("GET", "/openapi.json", "ops.openapi", OPERATIONS),
    RouteSpec("GET", "/docs", "ops.docs", OPERATIONS),
    RouteSpec("GET", "/console", "console.models", CONSOLE),
    RouteSpec("GET", "/console/try", "console.try", CONSOLE),
    RouteSpec("GET", "/console/live", "console.live", CONSOLE),
    RouteSpec("GET", "/console/admin", "console.admin", CONSOLE),
    RouteSpec("GET", "/console/api/models", "console.api_models", CONSOLE),
    RouteSpec("GET", "/console/api/live", "console.api_live", CONSOLE),
    RouteSpec("GET", "/console/static/{asset}", "console.static", CONSOLE),
)


def starlette_routes(handlers: Mapping[str, Endpoint]) -> list[Route]:
    """The app's routes: each of :data:`ROUTES` answered by ``handlers[spec.handler]``.

    Raises:
        KeyError: a handler of the table is missing from ``handlers`` (a wiring bug).
    """
    return [Route(spec.path, handlers[spec.handler], methods=[spec.method]) for spec in ROUTES]


def document(version: str) -> dict[str, Any]:
    """The OpenAPI document of :data:`ROUTES` for server ``version``."""
    return openapi_document(version, ROUTES)


# ------------------------------------------------------------------ the inference lane

#: A lane route's path split at "/": a literal segment, or None for a parameter (by name).
_Pattern = tuple[tuple[str | None, ...], tuple[str, ...], Lane]


def _compile(specs: tuple[RouteSpec, ...]) -> dict[int, list[_Pattern]]:
    patterns: dict[int, list[_Pattern]] = {}
    for spec in specs:
        if spec.method != "POST" or spec.lane is None:
            continue
        segments = spec.path.split("/")
        literals = tuple(None if s.startswith("{") else s for s in segments)
        names = tuple(s[1:-1] for s in segments if s.startswith("{"))
        patterns.setdefault(len(segments), []).append((literals, names, spec.lane))
    return patterns


_LANES = _compile(ROUTES)


def lane_match(path: str) -> tuple[Lane, dict[str, str]] | None:
    """The lane and path parameters of a POST to ``path``, when a lane route names it.

    ``path`` is the percent-decoded path (taken as it is); a parameter is one non-empty
    segment, as in Starlette's ``{name}``.
    """
    parts = path.split("/")
    for literals, names, lane in _LANES.get(len(parts), ()):
        params: list[str] = []
        for literal, part in zip(literals, parts, strict=True):
            if literal is None:
                if not part:
                    break
                params.append(part)
            elif literal != part:
                break
        else:
            return lane, dict(zip(names, params, strict=True))
    return None


# ------------------------------------------------------------------ the docs' table


def docs_table() -> str:
    """The Markdown table of ``docs/rest.md``: each API with its routes.

    A route and its ``/versions/{version}`` twin are one entry, ``{m}[/versions/{v}]``.
    """
    rows: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for spec in ROUTES:
        plain = spec.path.replace("/versions/{version}", "", 1)
        if plain != spec.path and any(s.path == plain and s.method == spec.method
                                      for s in ROUTES):
            continue  # written with its unversioned twin
        twin = spec.path.replace("{model}", "{model}/versions/{version}", 1)
        has_twin = "{model}" in spec.path and any(
            s.path == twin and s.method == spec.method for s in ROUTES)
        shown = spec.path.replace("{model}", "{m}[/versions/{v}]" if has_twin else "{m}", 1)
        if (spec.method, shown) not in seen:
            seen.add((spec.method, shown))
            rows.setdefault(spec.api, []).append(f"`{spec.method} {shown}`")
    lines = ["| API | Routes |", "|---|---|"]
    lines += [f"| {api} | {', '.join(routes)} |" for api, routes in rows.items()]
    return "\n".join(lines)
