"""The one route table: the app's routes, the lane's matcher, the OpenAPI paths, the docs."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from starlette.routing import Match

from ferry.protocols.rest.routes import ROUTES, docs_table, document, lane_match, starlette_routes

DOCS = (Path(__file__).resolve().parents[4] / "docs" / "rest.md").read_text()


async def _endpoint(request):  # never called: the routes are only matched
    raise AssertionError("not called")


def _router_match(path: str) -> tuple[str, dict[str, str]] | None:
    """What Starlette's router makes of ``POST path``: the lane route and its parameters."""
    handlers = {spec.handler: _endpoint for spec in ROUTES}
    for spec, route in zip(ROUTES, starlette_routes(handlers), strict=True):
        scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
        match, child = route.matches(scope)
        if match is Match.FULL:
            return (spec.lane, child["path_params"]) if spec.lane else None
    return None


def test_the_docs_table_is_the_route_tables():
    found = re.search(r"<!-- routes:[^>]*-->\n(.*?)\n<!-- /routes -->", DOCS, re.S)
    assert found is not None, "docs/rest.md lost its generated routes table"
    assert found.group(1) == docs_table()


def test_the_document_has_one_operation_per_route():
    paths = document("0.1.0")["paths"]
    documented = sorted((path, method.upper()) for path, ops in paths.items() for method in ops)
    assert documented == sorted((spec.path, spec.method) for spec in ROUTES)
    versioned = paths["/v2/models/{model}/versions/{version}/infer"]["post"]["parameters"]
    assert [p["name"] for p in versioned] == ["model", "version",
                                              "Inference-Header-Content-Length", "X-Request-ID"]


SEGMENTS = ["", "v2", "models", "m", "versions", "1", "infer", "predict", "a b", "%2F", ":",
            "v1", "m:predict", "ready", "x" * 3]


@pytest.mark.parametrize("seed", range(5))
def test_the_lane_matcher_agrees_with_starlettes_router(seed):
    # Differential: random paths made of the table's own words, and every lane path.
    rng = random.Random(seed)
    paths = ["/" + "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(1, 7)))
             for _ in range(2000)]
    paths += [spec.path.replace("{model}", "mm").replace("{version}", "3") for spec in ROUTES]
    for path in paths:
        assert lane_match(path) == _router_match(path), path
