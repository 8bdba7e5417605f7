"""The OpenAPI 3.1 document of the REST API, and a docs page that renders it.

Written by hand, because the hot routes take raw bodies (no pydantic models to generate a
schema from) and because the document must say what the server really accepts, so that
schema-based fuzzers test the real contract: JSON tensors, the binary extension's
``Inference-Header-Content-Length``, the repository extension, ``/predict`` and TF Serving.
Its paths come from the route table (:mod:`ferry.protocols.rest.routes`), like the app's
routes and the inference lane's matcher; each handler's operation is written here.

"What the server really accepts" is checked by a schemathesis run in the integration tests
(``tests/integration/protocols/rest/test_schemathesis.py``, every check): a request the
document forbids is refused, one it allows is accepted, and every answer has a documented
status, content type and schema. Two things no JSON schema can say are left to the server
and documented as 400 answers of the inference routes: whether tensors fit the model named
(its inputs, datatypes and shapes change with the models served) and whether ``data``
agrees with ``shape`` (a count, and rectangular nesting).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from ferry.signature import DATATYPES, MAX_DIM, MAX_RANK

__all__ = ["openapi_document"]

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
    "401": _answer("Authentication is on and the request has no valid bearer credential "
                   "(WWW-Authenticate: Bearer)", _ref("Error")),
    "403": _answer("The credential's grants do not cover this call", _ref("Error")),
    "404": _answer("Unknown model, version or output", _ref("Error")),
    "413": _answer("Body larger than the server's limit", _ref("Error")),
    "415": _answer("Content type or encoding the route does not read", _ref("Error")),
    "429": _answer("The model's queue is full; retry after Retry-After seconds",
                   _ref("Error")),
    "503": _answer("Server or model not ready (starting, draining)", _ref("Error")),
}
#: The refusals of a call that names a model and sends no body.
_READ_ERRORS = {"400": _answer("Malformed model name or version", _ref("Error")),
                **{k: _ERRORS[k] for k in ("401", "403", "404")}}
#: The refusals of a call that names no model and sends no body (health, server metadata).
_AUTH_ERRORS = {k: _ERRORS[k] for k in ("401", "403")}
#: The refusals of the console's data endpoints: a caller without read:*, or the console off.
_CONSOLE_ERRORS = {"404": _answer("The console is off (console = false)", _ref("Error")),
                   **_AUTH_ERRORS}

#: Security: a bearer credential (an API key or a JWT) when the server turns authentication
#: on; optional in the document ({} is "no credential"), because it is a setting.
_BEARER = {"type": "http", "scheme": "bearer",
           "description": "An API key (fk_...) from `ferry keys add`, or a JWT; needed only "
                          "when the server runs with [security] api_keys_file or a JWT key."}
_SECURITY: list[dict[str, list[str]]] = [{}, {"bearer": []}]

# ferry's model name rule (repository/layout.py check_model_name, which this package may not
# import; a unit test keeps the two in step): so generated names are ones a server can hold.
_MODEL = {"name": "model", "in": "path", "required": True,
          "description": "A model name: 1-128 letters, digits, '_', '.' or '-', starting with "
                         "a letter or digit, without '..'.",
          "schema": {"type": "string", "minLength": 1, "maxLength": 128,
                     "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$", "not": {"pattern": "[.][.]"}}}
_VERSION = {"name": "version", "in": "path", "required": True,
            "description": "A version number (1, 2, ...), as the repository numbers them.",
            "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}}
_ASSET = {"name": "asset", "in": "path", "required": True,
          "description": "The file name of a console asset.", "schema": {"type": "string"}}
_REQUEST_ID = {"name": "X-Request-ID", "in": "header", "required": False,
               "schema": {"type": "string"},
               "description": "Echoed in the response when it is 1-128 printable ASCII "
                              "characters; any other value (longer, or other characters) is "
                              "ignored and, as when absent, the server makes a fresh id."}
_HEADER_LENGTH = {"name": "Inference-Header-Content-Length", "in": "header",
                  "required": False,
                  "schema": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
                  "description": "Length of the JSON part when binary tensor data follows "
                                 "(at most the body's length)."}

_SCALAR = {"type": ["string", "number", "boolean"]}
_PARAMETERS = {"type": "object", "additionalProperties": _SCALAR}
#: Tensor values: a scalar, or a list of values and lists (nested to any depth), no nulls.
_DATA = {"description": "Flat (row-major) or nested values; strings for BYTES. A scalar is "
                        "one value (a tensor of one element, or one row of a model that takes "
                        "one value per row).",
         "anyOf": [_ref("Values"), _SCALAR]}

#: Values by input name.
_NAMED = {"type": "object", "additionalProperties": _DATA}

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": {"type": "string"}}},
    "TensorMetadata": {"type": "object", "required": ["name", "datatype", "shape"],
                       "properties": {"name": {"type": "string"},
                                      "datatype": {"type": "string"},
                                      "shape": {"type": "array",
                                                "items": {"type": "integer", "minimum": -1}}}},
    "Values": {"type": "array", "items": {"anyOf": [_SCALAR, _ref("Values")]}},
    "RequestInput": {
        "type": "object", "required": ["name", "shape", "datatype"],
        "description": "Needs 'data', or (not both) parameters.binary_data_size with binary "
                       "data after the JSON (Inference-Header-Content-Length).",
        "oneOf": [{"required": ["data"]},
                  {"required": ["parameters"], "properties": {
                      "parameters": {"type": "object", "required": ["binary_data_size"]}}}],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "shape": {"type": "array", "maxItems": MAX_RANK,
                      "items": {"type": "integer", "minimum": 0, "maximum": MAX_DIM}},
            "datatype": {"type": "string", "enum": list(DATATYPES)},
            "parameters": {"type": ["object", "null"], "additionalProperties": _SCALAR,
                           "properties": {"binary_data_size": {"type": "integer",
                                                               "minimum": 0}}},
            "data": _DATA}},
    "RequestOutput": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"},
                       "parameters": {"type": ["object", "null"],
                                      "additionalProperties": _SCALAR,
                                      "properties": {"binary_data": {"type": "boolean"}}}}},
    "InferenceRequest": {
        "type": "object", "required": ["inputs"],
        "description": "null is read as an absent 'id', 'parameters' or 'outputs', so "
                       "clients that write unset fields as null are understood.",
        "properties": {
            "id": {"type": ["string", "null"]},
            "parameters": {"type": ["object", "null"], "additionalProperties": _SCALAR,
                           "properties": {"binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "minItems": 1, "items": _ref("RequestInput")},
            "outputs": {"type": ["array", "null"], "items": _ref("RequestOutput")}}},
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
                       "inputs": {**_NAMED, "minProperties": 1}}},
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
                       "instances": {"type": "array", "minItems": 1, "description":
                                     "Rows: each the input's value, or each an object of "
                                     "input name -> value (not a mix).",
                                     "anyOf": [{"items": _DATA}, {"items": _NAMED}]},
                       "inputs": {"anyOf": [_DATA, {**_NAMED, "minProperties": 1}]}}},
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


def _op(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
        tag: str, engine: bool = True) -> dict[str, Any]:
    """An operation; ``engine``: it calls the engine, so authentication (when on) applies."""
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if body is not None:
        op["requestBody"] = body
    if engine:
        op["security"] = _SECURITY
    return op


def _operations() -> dict[str, dict[str, Any]]:
    """The OpenAPI operation of each handler of the route table (without its parameters)."""
    health = _answer("True", {"type": "object"})
    not_ok = _answer("False", {"type": "object"})
    predict_body = _body(_ref("PredictRequest"))
    predict_ok = {"200": _answer("Predictions", _ref("PredictResponse")), **_ERRORS}
    tf_ok = {"200": _answer("Predictions or outputs", _ref("TFServingResponse")), **_ERRORS}
    return {
        "v2.infer": _op(
            "Run inference (JSON tensors, or JSON + binary tensor data)",
            {"200": {"description": "Outputs; binary ones after the JSON when asked",
                     "headers": {"Inference-Header-Content-Length": {
                         "schema": {"type": "integer"}}},
                     "content": {_JSON: {"schema": _ref("InferenceResponse")},
                                 "application/octet-stream": {"schema": {
                                     "type": "string", "format": "binary"}}}},
             **_ERRORS},
            body=_body(_ref("InferenceRequest"), binary=True), tag="V2 inference"),
        # Health is open by default ([security] open_health); 401 when a server closes it.
        "v2.live": _op("Server liveness", {"200": health, "503": not_ok, **_AUTH_ERRORS},
                       tag="V2 health"),
        "v2.ready": _op("Server readiness", {"200": health, "503": not_ok, **_AUTH_ERRORS},
                        tag="V2 health"),
        "v2.server_metadata": _op("Server metadata", {"200": _answer(
            "Name, version, extensions", {"type": "object"}), **_AUTH_ERRORS},
            tag="V2 metadata"),
        "v2.model_metadata": _op("Model metadata", {
            "200": _answer("Metadata", _ref("ModelMetadata")), **_READ_ERRORS},
            tag="V2 metadata"),
        "v2.model_ready": _op("Model readiness", {"200": health, "503": not_ok,
                                                  **_READ_ERRORS}, tag="V2 health"),
        "v2.repository_index": _op(
            "List the repository's models and their states",
            {"200": _answer("Models", {"type": "array", "items": _ref("RepositoryModel")}),
             **{k: _ERRORS[k] for k in ("400", "401", "403", "413", "415")}},
            body=_body(_ref("RepositoryIndexRequest"), required=False), tag="V2 repository"),
        "v2.load": _op("Load (or reload) the newest version(s) of a model",
                       {"200": _answer("Loaded"), **_ERRORS},
                       body=_body(_ref("LoadRequest"), required=False), tag="V2 repository"),
        "v2.unload": _op("Unload a model", {"200": _answer("Unloaded"), **_ERRORS},
                         body=_body(_ref("UnloadRequest"), required=False),
                         tag="V2 repository"),
        "simple.predict": _op("Predict", predict_ok, body=predict_body, tag="Simple"),
        "tfserving.predict": _op("TensorFlow Serving predict", tf_ok,
                                 body=_body(_ref("TFServingRequest")),
                                 tag="TensorFlow Serving"),
        "tfserving.status": _op("Model status (TensorFlow Serving and KServe V1)",
                                {"200": _answer("Status", _ref("TFServingStatus")),
                                 **_READ_ERRORS}, tag="TensorFlow Serving"),
        "ops.metrics": _op("Prometheus metrics", {"200": {
            "description": "Exposition text", "content": {"text/plain": {
                "schema": {"type": "string"}}}}}, tag="Operations", engine=False),
        "ops.openapi": _op("This document", {"200": _answer("OpenAPI 3.1", {"type": "object"})},
                           tag="Operations", engine=False),
        "ops.docs": _op("API docs page (HTML)", {"200": {
            "description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
            tag="Operations", engine=False),
        # The web console (ferry.console): its pages hold no data (engine=False); its JSON
        # endpoints call the engine (the repository index's check).
        "console.models": _console_page("Console: models"),
        "console.try": _console_page("Console: try a model"),
        "console.live": _console_page("Console: live figures"),
        "console.admin": _console_page("Console: load and unload"),
        "console.api_models": _op(
            "Console data: models, versions, manifests' figures, request counts",
            {"200": _answer("Models", {"type": "object"}), **_CONSOLE_ERRORS},
            tag="Console"),
        "console.api_live": _op(
            "Console data: throughput, latency percentiles, queue depth of the last second",
            {"200": _answer("Figures", {"type": "object"}), **_CONSOLE_ERRORS},
            tag="Console"),
        "console.static": _op("Console asset (JavaScript, CSS) shipped in the package", {
            "200": {"description": "The file", "content": {
                "text/javascript": {"schema": {"type": "string"}},
                "text/css": {"schema": {"type": "string"}}}},
            "304": _answer("Not modified (If-None-Match)"),
            "404": _answer("No such asset, or the console is off", _ref("Error"))},
            tag="Console", engine=False),
    }


def _console_page(summary: str) -> dict[str, Any]:
    return _op(summary, {
        "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
        "404": _answer("The console is off (console = false)", _ref("Error"))},
        tag="Console", engine=False)


class Documented(Protocol):
    """What the document needs of a route (:class:`~ferry.protocols.rest.routes.RouteSpec`)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def handler(self) -> str: ...
    @property
    def summary(self) -> str | None: ...


def openapi_document(version: str, routes: Iterable[Documented]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (the route table), for server ``version``.

    Each route's operation is its handler's; its parameters are the path's (``{model}``,
    ``{version}``), the binary extension's header on the infer routes, and ``X-Request-ID``.
    """
    operations = _operations()
    paths: dict[str, Any] = {}
    for route in routes:
        op = dict(operations[route.handler])
        if route.summary:
            op["summary"] = route.summary
        params = [p for name, p in (("{model}", _MODEL), ("{version}", _VERSION),
                                    ("{asset}", _ASSET)) if name in route.path]
        if route.handler == "v2.infer":
            params.append(_HEADER_LENGTH)
        op["parameters"] = [*params, _REQUEST_ID]
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "ferry", "version": version,
                 "description": "Open Inference Protocol (KServe V2) with Triton's binary "
                                "tensor data and model repository extensions, the seed's "
                                "/predict, and TensorFlow Serving's predict API."},
        "paths": paths,
        "components": {"schemas": _SCHEMAS, "securitySchemes": {"bearer": _BEARER}},
    }
