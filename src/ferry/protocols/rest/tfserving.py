"""TensorFlow Serving's REST predict API, so that existing TF Serving clients work unchanged.

``POST /v1/models/{model}[/versions/{version}]:predict`` with either

* the row format ``{"instances": [row, ...]}``: each row is the input's value for one
  example, or ``{"input name": value, ...}`` for a model with several inputs; answered with
  ``{"predictions": [...]}`` (one value per row, or one object of outputs per row), or
* the columnar format ``{"inputs": value}`` or ``{"inputs": {"name": value, ...}}``;
  answered with ``{"outputs": value}`` or ``{"outputs": {"name": value, ...}}``.

``GET /v1/models/{model}[/versions/{version}]`` reports the model's status in TF Serving's
form (``model_version_status``) plus KServe V1's ``{"name", "ready"}``, so both kinds of
client can ask. ``signature_name`` is accepted (ferry's models have one signature). Errors
are TF Serving's own shape, ``{"error": "..."}``, which is also the V2 one.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ferry.errors import InputError
from ferry.inference import InferRequest, ModelMetadata
from ferry.protocols.rest.body import check_content_type, parse_json, read_body
from ferry.protocols.rest.codec import json_value
from ferry.protocols.rest.exchange import Answer, RestContext, exchange, json_response
from ferry.protocols.rest.simple import named_arrays, to_tensor

__all__ = ["routes"]


def routes(ctx: RestContext) -> list[Route]:
    """The TF Serving predict routes, with and without a version."""
    engine = ctx.engine

    async def predict(request: Request) -> Response:
        model: str = request.path_params["model"]
        version: str | None = request.path_params.get("version")

        async def work() -> Answer:
            check_content_type(request)
            body = await read_body(request, ctx.max_body_bytes)
            began = perf_counter()
            doc = parse_json(body)
            if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
                raise InputError(
                    'the predict request must be a JSON object with either "instances" '
                    '(row format) or "inputs" (columnar format)')
            meta = engine.model_metadata(model, version)
            rows = "instances" in doc
            arrays = _row_arrays(meta, doc["instances"]) if rows else named_arrays(
                meta, None if isinstance(doc["inputs"], dict) else doc["inputs"],
                doc["inputs"] if isinstance(doc["inputs"], dict) else None, what="'inputs'")
            infer_request = InferRequest(
                model_name=model, model_version=version,
                inputs=[to_tensor(meta, name, array) for name, array in arrays.items()])
            ctx.metrics.stage("decode", model=model, seconds=perf_counter() - began)
            result = await engine.infer(infer_request)
            began = perf_counter()
            outputs = {t.name: t.data for t in result.outputs}
            answer = _rows(outputs) if rows else {"outputs": _columns(outputs)}
            response = json_response(answer)
            ctx.metrics.stage("encode", model=model, seconds=perf_counter() - began)
            return Answer(response, result.model_version)

        return await exchange(ctx, model, work, version=version)

    async def status(request: Request) -> Response:
        model: str = request.path_params["model"]
        version: str | None = request.path_params.get("version")
        meta = engine.model_metadata(model, version)  # NotFoundError (404) if unknown
        versions = [version] if version is not None else meta.versions
        return json_response({
            "name": model,
            "ready": engine.model_ready(model, version),
            "model_version_status": [
                {"version": v,
                 "state": "AVAILABLE" if engine.model_ready(model, v) else "UNAVAILABLE",
                 "status": {"error_code": "OK", "error_message": ""}}
                for v in versions],
        })

    return [
        Route("/v1/models/{model}:predict", predict, methods=["POST"]),
        Route("/v1/models/{model}/versions/{version}:predict", predict, methods=["POST"]),
        Route("/v1/models/{model}", status, methods=["GET"]),
        Route("/v1/models/{model}/versions/{version}", status, methods=["GET"]),
    ]


def _row_arrays(meta: ModelMetadata, instances: Any) -> dict[str, np.ndarray[Any, Any]]:
    if not isinstance(instances, list) or not instances:
        raise InputError('"instances" must be a non-empty list of rows')
    if not all(isinstance(row, dict) for row in instances):
        if any(isinstance(row, dict) for row in instances):
            raise InputError('"instances": mix of objects and plain values; use one form')
        return named_arrays(meta, instances, None, what='"instances"')
    names = list(instances[0])
    for index, row in enumerate(instances):
        if sorted(row) != sorted(names):
            raise InputError(
                f'"instances"[{index}] has inputs {sorted(row)}, the first row has '
                f"{sorted(names)}; every row must name the same inputs")
    return named_arrays(meta, None, {n: [row[n] for row in instances] for n in names},
                        what='"instances"')


def _rows(outputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    if len(outputs) == 1:
        return {"predictions": json_value(next(iter(outputs.values())))}
    batch = min(len(a) for a in outputs.values())
    return {"predictions": [{name: json_value(a[i]) for name, a in outputs.items()}
                            for i in range(batch)]}


def _columns(outputs: dict[str, np.ndarray[Any, Any]]) -> Any:
    if len(outputs) == 1:
        return json_value(next(iter(outputs.values())))
    return {name: json_value(a) for name, a in outputs.items()}
