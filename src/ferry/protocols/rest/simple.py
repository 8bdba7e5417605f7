"""The seed's route, for people who start there: ``POST /predict`` with rows, get rows back.

``{"data": [[...], ...]}`` -> ``{"predictions": [[...], ...], "model": ..., "version": ...}``,
plus ``"labels"`` (the class label of each row's highest score) when the model's manifest
has class labels and its first output has one column per label. A model with several inputs
takes ``{"inputs": {"name": [[...]], ...}}`` instead of ``data``. A single row may be sent
without its batch nesting (``{"data": [0.1, ...]}``); it is answered as a batch of one.
"""

from __future__ import annotations

from time import perf_counter

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ferry.call import CallContext
from ferry.codec.rows import predict_answer, predict_request
from ferry.errors import InputError, NotFoundError
from ferry.inference import InferRequest, ModelMetadata
from ferry.protocols.rest.body import check_content_type, parse_json, read_body
from ferry.protocols.rest.exchange import Answer, RestContext, call_of, exchange
from ferry.protocols.rest.routes import Endpoint

__all__ = ["handlers", "predict_body"]


def handlers(ctx: RestContext) -> dict[str, Endpoint]:
    """The handler of ``POST /predict[/{model}[/versions/{v}]]`` (see routes.py)."""
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
            payload, answered = await predict_body(ctx, call_of(request), model, version, body)
            return Answer(Response(payload, media_type="application/json"), answered)

        return await exchange(ctx, model or "", work, version=version)

    return {"simple.predict": predict}


async def predict_body(ctx: RestContext, call: CallContext, model: str, version: str | None,
                       body: bytes) -> tuple[bytes, str]:
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

    def build(meta: ModelMetadata) -> InferRequest:
        request = predict_request(meta, model, version, doc)
        ctx.metrics.stage("decode", model=model, seconds=perf_counter() - began)
        return request

    result, meta = await engine.infer_built(call, model, version, build)
    began = perf_counter()
    payload = orjson.dumps(predict_answer(meta, model, result),
                           option=orjson.OPT_SERIALIZE_NUMPY)
    ctx.metrics.stage("encode", model=model, seconds=perf_counter() - began)
    return payload, result.model_version
