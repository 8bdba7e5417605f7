"""The OpenAPI document: valid OpenAPI 3.1, and its schemas accept what the server accepts
and refuse the structural mistakes the server refuses (issue 4, deliver 10; issue 15 item 6,
whose schemathesis run in tests/integration/protocols/rest/test_schemathesis.py checks the
same against a live server).
"""

from __future__ import annotations

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from ferry.errors import InputError
from ferry.protocols.rest.routes import document
from ferry.repository.layout import check_model_name

DOC = document("0.1.0")


def _validator(name: str) -> OAS31Validator:
    return OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": DOC["components"]})


def test_the_document_is_valid_openapi_3_1():
    validate(DOC)


GOOD_V2 = [
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [[1, 2]]}]},
    {"id": "7", "parameters": {"binary_data_output": True, "custom": "x"},
     "inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["a"]},
                {"name": "y", "datatype": "FP16", "shape": [2],
                 "parameters": {"binary_data_size": 4}}],
     "outputs": [{"name": "z", "parameters": {"binary_data": True}}]},
]
BAD_V2 = [
    {},
    {"inputs": []},
    {"inputs": [{"name": "x", "datatype": "FP8", "shape": [1], "data": [1]}]},
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]},
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1.5], "data": [1]}]},
    {"inputs": [{"name": "", "datatype": "FP32", "shape": [1], "data": [1]}]},
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1],
                 "parameters": {"binary_data_size": -1}}]},
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "id": 5},
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
     "parameters": {"nested": {"a": 1}}},
]


@pytest.mark.parametrize("body", GOOD_V2)
def test_valid_v2_requests_match_the_schema(body):
    _validator("InferenceRequest").validate(body)


@pytest.mark.parametrize("body", BAD_V2)
def test_structurally_bad_v2_requests_do_not(body):
    assert not _validator("InferenceRequest").is_valid(body)


def test_simple_and_repository_schemas():
    assert _validator("PredictRequest").is_valid({"data": [[1, 2]]})
    assert _validator("TFServingRequest").is_valid({"instances": [[1]]})
    assert not _validator("TFServingRequest").is_valid({"instances": []})
    assert not _validator("TFServingRequest").is_valid({"instances": [[1]], "inputs": [[1]]})
    assert not _validator("TFServingRequest").is_valid({"foo": 1})
    assert not _validator("PredictRequest").is_valid({"data": [[1]], "inputs": {"x": [1]}})
    assert not _validator("PredictRequest").is_valid({"rows": []})
    assert _validator("RepositoryIndexRequest").is_valid({"ready": True})
    assert not _validator("RepositoryIndexRequest").is_valid({"ready": "yes"})
    assert not _validator("LoadRequest").is_valid({"parameters": {"config": "{}"}})
    assert _validator("UnloadRequest").is_valid({"parameters": {"unload_dependents": True}})


# ------------------------------------------------ issue 15 item 6: the document is exact

V2_ROW = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [[1, 2]]}


def _params(path: str, method: str) -> dict[str, dict]:
    return {p["name"]: p for p in DOC["paths"][path][method]["parameters"]}


@pytest.mark.parametrize("name", ["mlp", "a", "A.b-c_1", "0", "x" * 128, "a.b.c", "a-",
                                  "x" * 129, "", ".a", "_a", "-a", "a..b", "a/b", "a b",
                                  "ä", "a\x00"])
def test_the_model_parameter_is_ferrys_name_rule(name):
    try:
        check_model_name(name)
        valid = True
    except InputError:
        valid = False
    schema = _params("/v2/models/{model}", "get")["model"]["schema"]
    assert OAS31Validator(schema).is_valid(name) is valid


@pytest.mark.parametrize(("version", "valid"), [("1", True), ("42", True), ("9" * 18, True),
                                                ("0", False), ("01", False), ("9" * 19, False),
                                                ("latest", False), ("", False)])
def test_the_version_parameter_is_a_version_number(version, valid):
    schema = _params("/v2/models/{model}/versions/{version}", "get")["version"]["schema"]
    assert OAS31Validator(schema).is_valid(version) is valid


def test_a_long_request_id_is_allowed_and_the_rule_described():
    # The server ignores an unusable id and makes a fresh one: it refuses nothing.
    param = _params("/v2", "get")["X-Request-ID"]
    assert "maxLength" not in param["schema"]
    assert "1-128 printable ASCII" in param["description"]
    assert "fresh id" in param["description"]


def test_calls_to_the_engine_may_need_a_bearer_credential():
    bearer = DOC["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    for path, methods in DOC["paths"].items():
        for op in methods.values():
            if path in ("/metrics", "/openapi.json", "/docs", "/console", "/console/try",
                        "/console/live", "/console/admin", "/console/static/{asset}"):
                assert "security" not in op and "401" not in op["responses"], path
            else:
                assert op["security"] == [{}, {"bearer": []}], path
                assert {"401", "403"} <= set(op["responses"]), path


def test_every_route_that_names_a_model_or_version_documents_400_and_404():
    for path, methods in DOC["paths"].items():
        if "{model}" in path:
            for op in methods.values():
                assert {"400", "404"} <= set(op["responses"]), path


GOOD_V2_MORE = [
    # null is read as absent for id, parameters and outputs (the server always has).
    {"id": None, "parameters": None, "outputs": None, "inputs": [V2_ROW]},
    {"inputs": [{**V2_ROW, "parameters": None}],
     "outputs": [{"name": "y", "parameters": None}]},
    {"inputs": [{"name": "x", "datatype": "BOOL", "shape": [], "data": False}]},
    {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2, 1], "data": [["a"], ["b"]]}]},
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1] * 64, "data": [1]}]},
]
BAD_V2_MORE = [
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]},  # neither data nor binary
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1],
                 "parameters": {"binary_data_size": 4}}]},  # both
    {"inputs": [{**V2_ROW, "data": None}]},
    {"inputs": [{**V2_ROW, "data": [[1, None]]}]},
    {"inputs": [{**V2_ROW, "data": [{"a": 1}]}]},
    {"inputs": [{**V2_ROW, "shape": [1] * 65}]},
    {"inputs": [{**V2_ROW, "shape": [2**31]}]},
    {"inputs": [V2_ROW], "parameters": {"binary_data_output": "yes"}},
    {"inputs": [V2_ROW], "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]},
]


@pytest.mark.parametrize("body", GOOD_V2_MORE)
def test_more_valid_v2_requests_match_the_schema(body):
    _validator("InferenceRequest").validate(body)


@pytest.mark.parametrize("body", BAD_V2_MORE)
def test_more_bad_v2_requests_do_not(body):
    assert not _validator("InferenceRequest").is_valid(body)


@pytest.mark.parametrize(("schema", "body", "valid"), [
    ("PredictRequest", {"data": [[1, 2.5, True, "a"]]}, True),
    ("PredictRequest", {"data": 1}, True),  # one row of a model that takes one value per row
    ("PredictRequest", {"inputs": {"a": [[1]], "b": [[2]]}}, True),
    ("PredictRequest", {"data": None}, False),
    ("PredictRequest", {"data": [[None]]}, False),
    ("PredictRequest", {"data": [{"a": 1}]}, False),
    ("PredictRequest", {"inputs": {}}, False),
    ("PredictRequest", {"inputs": {"a": None}}, False),
    ("TFServingRequest", {"instances": [{"a": [1], "b": [2]}]}, True),
    ("TFServingRequest", {"inputs": {"a": [[1]]}}, True),
    ("TFServingRequest", {"inputs": [[1]], "signature_name": "serving_default"}, True),
    ("TFServingRequest", {"instances": [[1], {"a": [1]}]}, False),  # a mix
    ("TFServingRequest", {"instances": [[1]], "signature_name": 1}, False),
    ("TFServingRequest", {"inputs": None}, False),
    ("TFServingRequest", {"inputs": {}}, False),
    ("LoadRequest", {"parameters": None}, False),
    ("LoadRequest", {}, True),
    ("UnloadRequest", {"parameters": {"unload_dependents": None}}, False),
    ("UnloadRequest", {"parameters": []}, False),
    ("RepositoryIndexRequest", {"ready": None}, False),
])
def test_row_and_repository_schemas_say_what_the_server_takes(schema, body, valid):
    assert _validator(schema).is_valid(body) is valid


def test_the_binary_header_is_at_most_18_digits():
    schema = _params("/v2/models/{model}/infer", "post")[
        "Inference-Header-Content-Length"]["schema"]
    assert OAS31Validator(schema).is_valid(10**18 - 1)
    assert not OAS31Validator(schema).is_valid(10**18)
    assert not OAS31Validator(schema).is_valid(-1)
