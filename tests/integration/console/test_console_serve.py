"""``ferry serve`` as a user runs it: the console is on by default, FERRY_CONSOLE=false turns it off."""

from __future__ import annotations

import httpx
import pytest

from builders import mlp_onnx
from ferry.formats import import_model
from ferry.repository import Repository
from serving import ferry_serve


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repository:
    root = tmp_path_factory.mktemp("console-serve")
    repo = Repository(root / "repo")
    import_model(repo, mlp_onnx(root / "m.onnx"), "mlp")
    return repo


def test_ferry_serve_offers_the_console(repo):
    with ferry_serve(repo.root) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        page = http.get("/console")
        assert page.status_code == 200 and '<nav aria-label="Console">' in page.text
        models = http.get("/console/api/models").json()["models"]
        assert [m["name"] for m in models] == ["mlp"]
        assert models[0]["versions"][0]["status"] == "ready"
        assert http.get("/console/static/uPlot.iife.min.js").status_code == 200
        figures = http.get("/console/api/live").json()
        assert "mlp" in figures["models"]


def test_ferry_console_false_turns_it_off(repo):
    with ferry_serve(repo.root, env={"FERRY_CONSOLE": "false"}) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        off = http.get("/console")
        assert off.status_code == 404
        assert "console = false" in off.json()["error"]
        assert http.get("/console/api/live").status_code == 404
        assert http.get("/docs").status_code == 200
        assert http.get("/console/static/redoc.standalone.js").status_code == 200
