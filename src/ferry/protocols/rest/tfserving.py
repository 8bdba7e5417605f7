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

from starlette.requests import Request
from starlette.responses import Response

from ferry.codec.rows import tfserving_answer, tfserving_request
from ferry.errors import InputError
from ferry.inference import InferRequest, ModelMetadata
from ferry.protocols.rest.body import check_content_type, parse_json, read_body
from ferry.protocols.rest.exchange import Answer, RestContext, call_of, exchange, json_response
from ferry.protocols.rest.routes import Endpoint

__all__ = ["handlers"]


def handlers(ctx: RestContext) -> dict[str, Endpoint]:
    """The TF Serving handlers, predict and status (see routes.py)."""
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
            if not isinstance(doc.get("signature_name", ""), str):
                raise InputError('"signature_name" must be a string')
            rows = "instances" in doc

            def build(meta: ModelMetadata) -> InferRequest:
                infer_request = tfserving_request(meta, model, version, doc)
                ctx.metrics.stage("decode", model=model, seconds=perf_counter() - began)
                return infer_request

            result, _ = await engine.infer_built(call_of(request), model, version, build)
            began = perf_counter()
            response = json_response(tfserving_answer(result, rows=rows))
            ctx.metrics.stage("encode", model=model, seconds=perf_counter() - began)
            return Answer(response, result.model_version)

        return await exchange(ctx, model, work, version=version)

    async def status(request: Request) -> Response:
        model: str = request.path_params["model"]
        version: str | None = request.path_params.get("version")
        call = call_of(request)
        meta = engine.model_metadata(call, model, version)  # NotFoundError (404) if unknown
        versions = [version] if version is not None else meta.versions
        # Every version metadata lists is served; all are ready unless the server stops.
        ready = engine.model_ready(call, model, version)
        return json_response({
            "name": model,
            "ready": ready,
            "model_version_status": [
                {"version": v,
                 "state": "AVAILABLE" if ready else "UNAVAILABLE",
                 "status": {"error_code": "OK", "error_message": ""}}
                for v in versions],
        })

    return {"tfserving.predict": predict, "tfserving.status": status}
