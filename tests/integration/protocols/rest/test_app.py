"""The app around the routes: request ids, /metrics, the OpenAPI document and docs page,
and what a client sees while the engine is not ready (issue 4, deliver 9 and 10).
"""

from __future__ import annotations

import re

import httpx
import orjson
import pytest
from starlette.routing import Route

from ferry.protocols.rest.app import create_app
from rest_server import make_engine, serve

PAIR = {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
                   {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}]}


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_request_id_is_taken_from_the_request_or_generated(http):
    given = http.post("/v2/models/pair/infer", json=PAIR, headers={"x-request-id": "trace-42"})
    assert given.status_code == 200 and given.headers["x-request-id"] == "trace-42"
    made = http.get("/v2/health/live")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert made.headers["x-request-id"] != http.get("/v2/health/live").headers["x-request-id"]
    error = http.post("/v2/models/pair/infer", content=b"{", headers={"x-request-id": "e-1"})
    assert error.status_code == 400 and error.headers["x-request-id"] == "e-1"
    odd = http.get("/v2/health/live", headers={"x-request-id": "x" * 500})
    assert odd.headers["x-request-id"] != "x" * 500  # too long: replaced, not echoed


def test_v2_body_id_is_echoed(http):
    response = http.post("/v2/models/pair/versions/1/infer", json={**PAIR, "id": "body-id"})
    assert response.json()["id"] == "body-id" and response.json()["model_version"] == "1"


def test_metrics_count_rest_requests_and_stages(http):
    http.post("/v2/models/pair/infer", json=PAIR)
    http.post("/v2/models/pair/infer", content=b"{")
    http.post("/predict/mlp", json={"data": [[1, 2, 3, 4]]})
    response = http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/plain")
    text = response.text
    ok = re.search(r'ferry_requests_total\{model="pair",protocol="rest",status="200",'
                   r'version="1"\} (\d+)', _sorted_labels(text))
    bad = re.search(r'ferry_requests_total\{model="pair",protocol="rest",status="400",'
                    r'version=""\} (\d+)', _sorted_labels(text))
    assert ok and int(float(ok.group(1))) >= 1
    assert bad and int(float(bad.group(1))) >= 1
    for stage in ("decode", "encode"):
        assert re.search(rf'ferry_stage_duration_seconds_count\{{[^}}]*stage="{stage}"', text)


def _sorted_labels(text: str) -> str:
    """Exposition lines with their labels in name order, so the regexes do not rely on it."""
    def fix(match: re.Match[str]) -> str:
        labels = sorted(re.findall(r'(\w+="[^"]*")', match.group(2)))
        return f"{match.group(1)}{{{','.join(labels)}}}"
    return re.sub(r"^(\w+)\{([^}]*)\}", fix, text, flags=re.M)


def test_openapi_document_lists_exactly_the_routes_the_app_serves(http, server):
    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    app = create_app(server.engine)
    served = {(route.path, method) for route in app.routes if isinstance(route, Route)
              for method in (route.methods or ()) if method != "HEAD"}
    assert documented == served
    schemas = doc["components"]["schemas"]
    datatypes = schemas["RequestInput"]["properties"]["datatype"]["enum"]
    assert "BYTES" in datatypes and "FP16" in datatypes
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', orjson.dumps(doc).decode()))
    assert refs <= set(schemas)


def test_docs_page_renders_the_document(http):
    response = http.get("/docs")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    assert 'spec-url="openapi.json"' in response.text


def test_health_503_and_infer_503_with_retry_after_once_the_engine_is_stopping(rest_repo):
    engine = make_engine(rest_repo)
    with serve(engine, rest_repo) as served, \
            httpx.Client(base_url=served.url, timeout=30) as http:
        assert http.post("/v2/models/pair/infer", json=PAIR).status_code == 200
        served.call(engine.stop(timeout=5.0))
        ready = http.get("/v2/health/ready")
        assert ready.status_code == 503 and ready.json() == {"ready": False}
        model_ready = http.get("/v2/models/pair/ready")
        assert model_ready.status_code in (404, 503)
        response = http.post("/v2/models/pair/infer", json=PAIR)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert "shutting down" in response.json()["error"]


def test_503_with_retry_after_before_the_engine_has_started(rest_repo):
    engine = make_engine(rest_repo)
    with serve(engine, rest_repo, start_engine=False) as served, \
            httpx.Client(base_url=served.url, timeout=30) as http:
        assert http.get("/v2/health/ready").status_code == 503
        response = http.post("/v2/models/pair/infer", json=PAIR)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit() and response.json()["error"]
