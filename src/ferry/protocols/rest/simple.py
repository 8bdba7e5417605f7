"""The seed's route, for people who start there: ``POST /predict`` with rows, get rows back.

``{"data": [[...], ...]}`` -> ``{"predictions": [[...], ...], "model": ..., "version": ...}``,
plus ``"labels"`` (the class label of each row's highest score) when the model's manifest
has class labels and its first output has one column per label. A model with several inputs
takes ``{"inputs": {"name": [[...]], ...}}`` instead of ``data``. A single row may be sent
without its batch nesting (``{"data": [0.1, ...]}``); it is answered as a batch of one.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ferry.errors import InputError, NotFoundError, quote_name
from ferry.inference import InferRequest, ModelMetadata, RequestedOutput, Tensor
from ferry.protocols.rest.body import check_content_type, parse_json, read_body
from ferry.protocols.rest.codec import convert, json_value
from ferry.protocols.rest.exchange import Answer, RestContext, exchange
from ferry.signature import TensorSpec

__all__ = ["named_arrays", "predict_body", "routes", "to_tensor"]


def routes(ctx: RestContext) -> list[Route]:
    """``POST /predict`` (the default model) and ``POST /predict/{model}[/versions/{v}]``."""
    engine = ctx.engine

    async def predict(request: Request) -> Response:
        params = request.path_params
        model: str | None = params.get("model") or engine.default_model()
        version: str | None = params.get("version")

        async def work() -> Answer:
            if model is None:
                raise NotFoundError("no default model to predict with; POST to /predict/{model}")
            check_content_type(request)
            body = await read_body(request, ctx.max_body_bytes)
            payload, answered = await predict_body(ctx, model, version, body)
            return Answer(Response(payload, media_type="application/json"), answered)

        return await exchange(ctx, model or "", work, version=version)

    return [
        Route("/predict", predict, methods=["POST"]),
        Route("/predict/{model}", predict, methods=["POST"]),
        Route("/predict/{model}/versions/{version}", predict, methods=["POST"]),
    ]


async def predict_body(ctx: RestContext, model: str, version: str | None, body: bytes
                       ) -> tuple[bytes, str]:
    """Answer a ``/predict`` body: the JSON answer and the version that gave it.

    Raises:
        FerryError: anything wrong with the body or the model (the caller answers 4xx).
    """
    engine = ctx.engine
    began = perf_counter()
    doc = parse_json(body)
    if not isinstance(doc, dict) or ("data" not in doc and "inputs" not in doc):
        raise InputError('/predict expects a JSON object {"data": [[...], ...]} '
                         '(or {"inputs": {"name": [[...]]}} for several inputs)')
    meta = engine.model_metadata(model, version)
    arrays = named_arrays(meta, doc.get("data"), doc.get("inputs"), what="'data'")
    first = meta.outputs[0].name
    infer_request = InferRequest(
        model_name=model, model_version=version,
        inputs=[to_tensor(meta, name, array) for name, array in arrays.items()],
        outputs=[RequestedOutput(first)])
    ctx.metrics.stage("decode", model=model, seconds=perf_counter() - began)
    result = await engine.infer(infer_request)
    began = perf_counter()
    scores = result.outputs[0].data
    answer: dict[str, Any] = {"predictions": json_value(scores), "model": model,
                              "version": result.model_version}
    labels = meta.labels
    if labels and scores.ndim == 2 and scores.shape[1] == len(labels):
        answer["labels"] = [labels[i] for i in scores.argmax(axis=1).tolist()]
    payload = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    ctx.metrics.stage("encode", model=model, seconds=perf_counter() - began)
    return payload, result.model_version


def named_arrays(meta: ModelMetadata, data: Any, inputs: Any, *,
                 what: str) -> dict[str, np.ndarray[Any, Any]]:
    """Arrays by input name from ``data`` (one input) or ``inputs`` (an object by name).

    Raises:
        InputError: both or neither given, several inputs but only ``data``, or data that
            does not convert to the input's datatype.
    """
    if data is not None and inputs is not None:
        raise InputError(f"give either {what} or 'inputs', not both")
    if data is not None:
        if len(meta.inputs) != 1:
            raise InputError(
                f"model {meta.name!r} has {len(meta.inputs)} inputs "
                f"({', '.join(repr(s.name) for s in meta.inputs)}); send "
                '{"inputs": {"name": [...], ...}} instead of ' + what)
        spec = meta.inputs[0]
        return {spec.name: _batched(spec, convert(data, spec.name, spec.datatype))}
    if not isinstance(inputs, dict) or not inputs:
        raise InputError("'inputs' must be a JSON object of input name -> rows")
    arrays = {}
    for name, value in inputs.items():
        found = next((s for s in meta.inputs if s.name == name), None)
        if found is None:
            raise InputError(
                f"unknown input {quote_name(name)}; the model's inputs are "
                f"{', '.join(repr(s.name) for s in meta.inputs)}")
        arrays[name] = _batched(found, convert(value, name, found.datatype))
    return arrays


def to_tensor(meta: ModelMetadata, name: str, array: np.ndarray[Any, Any]) -> Tensor:
    """Wrap an array as the request tensor of input ``name`` (the engine checks it)."""
    for spec in meta.inputs:
        if spec.name == name:
            return Tensor(name, spec.datatype, array.shape, array)
    raise InputError(f"unknown input {quote_name(name)}")


def _batched(spec: TensorSpec, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # One row without its batch nesting: add the batch axis the model expects.
    if spec.shape and spec.shape[0] == -1 and array.ndim == len(spec.shape) - 1:
        return array[np.newaxis, ...]
    return array
