"""The OpenAPI document: valid OpenAPI 3.1, and its schemas accept what the server accepts
and refuse the structural mistakes the server refuses (issue 4, deliver 10).
"""

from __future__ import annotations

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from ferry.protocols.rest.routes import document

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
