"""The OpenAPI 3.1 document of the REST API, and a docs page that renders it.

Written by hand, because the hot routes take raw bodies (no pydantic models to generate a
schema from) and because the document must say what the server really accepts, so that
schema-based fuzzers test the real contract: JSON tensors, the binary extension's
``Inference-Header-Content-Length``, the repository extension, ``/predict`` and TF Serving.
A test compares the documented paths and methods with the app's routes.
"""

from __future__ import annotations

from typing import Any

from ferry.signature import DATATYPES

__all__ = ["DOCS_HTML", "openapi_document"]

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any], *, required: bool = True, binary: bool = False
          ) -> dict[str, Any]:
    content: dict[str, Any] = {_JSON: {"schema": schema}}
    if binary:
        content["application/octet-stream"] = {"schema": {
            "type": "string", "format": "binary",
            "description": "The JSON request (Inference-Header-Content-Length bytes) followed "
                           "by the raw data of each input that has binary_data_size."}}
    return {"required": required, "content": content}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {_JSON: {"schema": schema}}
    return out


_ERRORS = {
    "400": _answer("Malformed request, or tensors that do not fit the model", _ref("Error")),
    "404": _answer("Unknown model, version or output", _ref("Error")),
    "413": _answer("Body larger than the server's limit", _ref("Error")),
    "415": _answer("Content type or encoding the route does not read", _ref("Error")),
    "429": _answer("The model's queue is full; retry after Retry-After seconds",
                   _ref("Error")),
    "503": _answer("Server or model not ready (starting, draining)", _ref("Error")),
}
_READ_ERRORS = {k: _ERRORS[k] for k in ("404",)}

_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True,
            "schema": {"type": "string"}}
_REQUEST_ID = {"name": "X-Request-ID", "in": "header", "required": False,
               "schema": {"type": "string", "maxLength": 128},
               "description": "Echoed in the response; generated when absent."}
_HEADER_LENGTH = {"name": "Inference-Header-Content-Length", "in": "header",
                  "required": False, "schema": {"type": "integer", "minimum": 0},
                  "description": "Length of the JSON part when binary tensor data follows."}

_SCALAR = {"type": ["string", "number", "integer", "boolean"]}
_PARAMETERS = {"type": "object", "additionalProperties": _SCALAR}
_DATA = {"description": "Flat (row-major) or nested values; strings for BYTES.",
         "anyOf": [{"type": "array"}, _SCALAR]}

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": {"type": "string"}}},
    "TensorMetadata": {"type": "object", "required": ["name", "datatype", "shape"],
                       "properties": {"name": {"type": "string"},
                                      "datatype": {"type": "string"},
                                      "shape": {"type": "array",
                                                "items": {"type": "integer", "minimum": -1}}}},
    "RequestInput": {
        "type": "object", "required": ["name", "shape", "datatype"],
        "description": "Needs 'data', or parameters.binary_data_size with binary data.",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0,
                                                 "maximum": (1 << 63) - 1}},
            "datatype": {"type": "string", "enum": list(DATATYPES)},
            "parameters": {"type": "object", "additionalProperties": _SCALAR, "properties": {
                "binary_data_size": {"type": "integer", "minimum": 0}}},
            "data": _DATA}},
    "RequestOutput": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"},
                       "parameters": {"type": "object", "additionalProperties": _SCALAR,
                                      "properties": {"binary_data": {"type": "boolean"}}}}},
    "InferenceRequest": {
        "type": "object", "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "additionalProperties": _SCALAR, "properties": {
                "binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "minItems": 1, "items": _ref("RequestInput")},
            "outputs": {"type": "array", "items": _ref("RequestOutput")}}},
    "ResponseOutput": {
        "type": "object", "required": ["name", "shape", "datatype"],
        "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                       "shape": {"type": "array", "items": {"type": "integer"}},
                       "parameters": _PARAMETERS, "data": {"type": "array"}}},
    "InferenceResponse": {
        "type": "object", "required": ["model_name", "outputs"],
        "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                       "id": {"type": "string"}, "parameters": _PARAMETERS,
                       "outputs": {"type": "array", "items": _ref("ResponseOutput")}}},
    "ModelMetadata": {
        "type": "object", "required": ["name", "platform", "inputs", "outputs"],
        "properties": {"name": {"type": "string"},
                       "versions": {"type": "array", "items": {"type": "string"}},
                       "platform": {"type": "string"},
                       "inputs": {"type": "array", "items": _ref("TensorMetadata")},
                       "outputs": {"type": "array", "items": _ref("TensorMetadata")}}},
    "PredictRequest": {
        "type": "object",
        "description": "'data' for a model with one input, or 'inputs' by name; not both.",
        "oneOf": [{"required": ["data"]}, {"required": ["inputs"]}],
        "properties": {"data": _DATA,
                       "inputs": {"type": "object", "additionalProperties": _DATA}}},
    "PredictResponse": {
        "type": "object", "required": ["predictions", "model", "version"],
        "properties": {"predictions": {"type": "array"}, "model": {"type": "string"},
                       "version": {"type": "string"},
                       "labels": {"type": "array", "items": {"type": "string"}}}},
    "TFServingRequest": {
        "type": "object",
        "description": "Exactly one of 'instances' (row format) and 'inputs' (columnar).",
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
        "properties": {"signature_name": {"type": "string"},
                       "instances": {"type": "array", "minItems": 1},
                       "inputs": {"anyOf": [{"type": "object"}, {"type": "array"}, _SCALAR]}}},
    "TFServingResponse": {
        "type": "object",
        "properties": {"predictions": {"type": "array"},
                       "outputs": {"anyOf": [{"type": "object"}, {"type": "array"}]}}},
    "TFServingStatus": {
        "type": "object", "required": ["name", "ready", "model_version_status"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"},
                       "model_version_status": {"type": "array", "items": {
                           "type": "object", "properties": {
                               "version": {"type": "string"}, "state": {"type": "string"},
                               "status": {"type": "object"}}}}}},
    "RepositoryIndexRequest": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    "RepositoryModel": {
        "type": "object", "required": ["name", "state"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                       "state": {"type": "string"}, "reason": {"type": "string"}}},
    "LoadRequest": {"type": "object", "properties": {
        "parameters": {"type": "object", "maxProperties": 0,
                       "description": "No load parameters: models come from the repository."}}},
    "UnloadRequest": {"type": "object", "properties": {"parameters": {
        "type": "object", "additionalProperties": False,
        "properties": {"unload_dependents": {"type": "boolean"}}}}},
}


def _op(summary: str, responses: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None, tag: str) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag],
                          "parameters": [*(params or []), _REQUEST_ID], "responses": responses}
    if body is not None:
        op["requestBody"] = body
    return op


def _paths() -> dict[str, Any]:
    health = _answer("True", {"type": "object"})
    not_ok = _answer("False", {"type": "object"})
    infer = _op(
        "Run inference (JSON tensors, or JSON + binary tensor data)",
        {"200": {"description": "Outputs; binary ones after the JSON when asked",
                 "headers": {"Inference-Header-Content-Length": {"schema": {"type": "integer"}}},
                 "content": {_JSON: {"schema": _ref("InferenceResponse")},
                             "application/octet-stream": {"schema": {"type": "string",
                                                                     "format": "binary"}}}},
         **_ERRORS},
        params=[_MODEL, _HEADER_LENGTH], body=_body(_ref("InferenceRequest"), binary=True),
        tag="V2 inference")
    infer_v = {**infer, "parameters": [_MODEL, _VERSION, *infer["parameters"][1:]]}
    metadata = _op("Model metadata", {"200": _answer("Metadata", _ref("ModelMetadata")),
                                      **_READ_ERRORS}, params=[_MODEL], tag="V2 metadata")
    ready = _op("Model readiness", {"200": health, "503": not_ok, **_READ_ERRORS},
                params=[_MODEL], tag="V2 health")
    predict_body = _body(_ref("PredictRequest"))
    predict_ok = {"200": _answer("Predictions", _ref("PredictResponse")), **_ERRORS}
    tf_ok = {"200": _answer("Predictions or outputs", _ref("TFServingResponse")), **_ERRORS}
    tf_body = _body(_ref("TFServingRequest"))
    tf_status = {"200": _answer("Status", _ref("TFServingStatus")), **_READ_ERRORS}
    return {
        "/v2/health/live": {"get": _op("Server liveness", {"200": health, "503": not_ok},
                                       tag="V2 health")},
        "/v2/health/ready": {"get": _op("Server readiness", {"200": health, "503": not_ok},
                                        tag="V2 health")},
        "/v2": {"get": _op("Server metadata", {"200": _answer("Name, version, extensions",
                                                              {"type": "object"})},
                           tag="V2 metadata")},
        "/v2/models/{model}": {"get": metadata},
        "/v2/models/{model}/versions/{version}": {
            "get": {**metadata, "parameters": [_MODEL, _VERSION, _REQUEST_ID]}},
        "/v2/models/{model}/ready": {"get": ready},
        "/v2/models/{model}/versions/{version}/ready": {
            "get": {**ready, "parameters": [_MODEL, _VERSION, _REQUEST_ID]}},
        "/v2/models/{model}/infer": {"post": infer},
        "/v2/models/{model}/versions/{version}/infer": {"post": infer_v},
        "/v2/repository/index": {"post": _op(
            "List the repository's models and their states",
            {"200": _answer("Models", {"type": "array", "items": _ref("RepositoryModel")}),
             **{k: _ERRORS[k] for k in ("400", "413", "415")}},
            body=_body(_ref("RepositoryIndexRequest"), required=False), tag="V2 repository")},
        "/v2/repository/models/{model}/load": {"post": _op(
            "Load (or reload) the newest version(s) of a model", {"200": _answer("Loaded"),
                                                                   **_ERRORS},
            params=[_MODEL], body=_body(_ref("LoadRequest"), required=False),
            tag="V2 repository")},
        "/v2/repository/models/{model}/unload": {"post": _op(
            "Unload a model", {"200": _answer("Unloaded"), **_ERRORS}, params=[_MODEL],
            body=_body(_ref("UnloadRequest"), required=False), tag="V2 repository")},
        "/predict": {"post": _op("Predict with the default model", predict_ok,
                                 body=predict_body, tag="Simple")},
        "/predict/{model}": {"post": _op("Predict with a model", predict_ok, params=[_MODEL],
                                         body=predict_body, tag="Simple")},
        "/predict/{model}/versions/{version}": {"post": _op(
            "Predict with a model version", predict_ok, params=[_MODEL, _VERSION],
            body=predict_body, tag="Simple")},
        "/v1/models/{model}:predict": {"post": _op(
            "TensorFlow Serving predict", tf_ok, params=[_MODEL], body=tf_body,
            tag="TensorFlow Serving")},
        "/v1/models/{model}/versions/{version}:predict": {"post": _op(
            "TensorFlow Serving predict (one version)", tf_ok, params=[_MODEL, _VERSION],
            body=tf_body, tag="TensorFlow Serving")},
        "/v1/models/{model}": {"get": _op(
            "Model status (TensorFlow Serving and KServe V1)", tf_status, params=[_MODEL],
            tag="TensorFlow Serving")},
        "/v1/models/{model}/versions/{version}": {"get": _op(
            "Model version status", tf_status, params=[_MODEL, _VERSION],
            tag="TensorFlow Serving")},
        "/metrics": {"get": _op("Prometheus metrics", {"200": {
            "description": "Exposition text", "content": {"text/plain": {
                "schema": {"type": "string"}}}}}, tag="Operations")},
        "/openapi.json": {"get": _op("This document", {"200": _answer("OpenAPI 3.1",
                                                                      {"type": "object"})},
                                     tag="Operations")},
        "/docs": {"get": _op("API docs page (HTML)", {"200": {
            "description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
            tag="Operations")},
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the REST API, for server ``version``."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "ferry", "version": version,
                 "description": "Open Inference Protocol (KServe V2) with Triton's binary "
                                "tensor data and model repository extensions, the seed's "
                                "/predict, and TensorFlow Serving's predict API."},
        "paths": _paths(),
        "components": {"schemas": _SCHEMAS},
    }


#: The docs page: Redoc from its CDN renders /openapi.json (only the browser fetches it).
DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ferry REST API</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
  <noscript>The API reference needs JavaScript; the raw document is at
    <a href="openapi.json">openapi.json</a>.</noscript>
  <redoc spec-url="openapi.json"></redoc>
  <script src="https://cdn.redoc.ly/redoc/v2.1.5/bundles/redoc.standalone.js"></script>
</body>
</html>
"""
