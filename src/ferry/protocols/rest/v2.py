"""The Open Inference Protocol (KServe V2) over REST, with Triton's extensions.

Health, metadata, inference (JSON tensors and the binary tensor data extension) and the
model repository extension (index, load, unload).

Health answers follow KServe: 200 with ``{"live"|"ready": true}``, 503 with ``false`` (the
status carries the answer, as the spec asks; the body is for KServe's client, which reads it).
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ferry.call import CallContext
from ferry.codec.v2json import HEADER, decode_request, split_body
from ferry.errors import InputError, quote_name
from ferry.inference import ModelMetadata
from ferry.protocols.rest.body import check_content_type, parse_json, read_body
from ferry.protocols.rest.codec import encode_response
from ferry.protocols.rest.exchange import Answer, RestContext, call_of, exchange, json_response
from ferry.protocols.rest.routes import Endpoint

__all__ = ["handlers", "infer_body", "metadata_document"]


def handlers(ctx: RestContext) -> dict[str, Endpoint]:
    """The V2 handlers by the names the route table (routes.py) gives them."""
    h = _Handlers(ctx)
    return {"v2.infer": h.infer, "v2.live": h.live, "v2.ready": h.ready,
            "v2.server_metadata": h.server_metadata, "v2.model_metadata": h.model_metadata,
            "v2.model_ready": h.model_ready, "v2.repository_index": h.repository_index,
            "v2.load": h.load, "v2.unload": h.unload}


class _Handlers:
    """The V2 handlers over one engine."""

    def __init__(self, ctx: RestContext) -> None:
        self.ctx = ctx
        self.engine = ctx.engine

    async def infer(self, request: Request) -> Response:
        params = request.path_params
        model: str = params["model"]
        version: str | None = params.get("version")

        async def work() -> Answer:
            check_content_type(request, binary=True)
            body = await read_body(request, self.ctx.max_body_bytes)
            payload, header_length, answered = await infer_body(
                self.ctx, call_of(request), model, version, body, request.headers.get(HEADER))
            if header_length is None:
                response = Response(payload, media_type="application/json")
            else:
                response = Response(payload, media_type="application/octet-stream",
                                    headers={HEADER: str(header_length)})
            return Answer(response, answered)

        return await exchange(self.ctx, model, work, version=version)

    async def live(self, request: Request) -> Response:
        ok = self.engine.live(call_of(request))
        return json_response({"live": ok}, 200 if ok else 503)

    async def ready(self, request: Request) -> Response:
        ok = self.engine.ready(call_of(request))
        return json_response({"ready": ok}, 200 if ok else 503)

    async def server_metadata(self, request: Request) -> Response:
        meta = self.engine.server_metadata(call_of(request))
        return json_response({"name": meta.name, "version": meta.version,
                              "extensions": meta.extensions})

    async def model_metadata(self, request: Request) -> Response:
        params = request.path_params
        return json_response(metadata_document(
            self.engine.model_metadata(call_of(request), params["model"],
                                       params.get("version"))))

    async def model_ready(self, request: Request) -> Response:
        name: str = request.path_params["model"]
        version: str | None = request.path_params.get("version")
        call = call_of(request)
        if self.engine.model_ready(call, name, version):
            return json_response({"name": name, "ready": True})
        self.engine.model_metadata(call, name, version)  # NotFoundError (404) if unknown
        return json_response({"name": name, "ready": False}, 503)

    async def repository_index(self, request: Request) -> Response:
        doc = await _optional_json(request, self.ctx)
        ready_only = doc.get("ready", False)
        if not isinstance(ready_only, bool):
            raise InputError("repository index: 'ready' must be true or false")
        rows = []
        for entry in self.engine.repository_index(call_of(request), ready_only=ready_only):
            row: dict[str, Any] = {"name": entry.name}
            if entry.version is not None:
                row["version"] = entry.version
            row["state"] = entry.state
            row["reason"] = entry.reason
            rows.append(row)
        return json_response(rows)

    async def load(self, request: Request) -> Response:
        name: str = request.path_params["model"]
        doc = await _optional_json(request, self.ctx)
        parameters = doc.get("parameters", {})
        if not isinstance(parameters, dict):
            raise InputError(f"load {quote_name(name)}: 'parameters' must be a JSON object")
        unsupported = sorted(parameters)
        if unsupported:
            raise InputError(
                f"load {quote_name(name)}: parameter {quote_name(unsupported[0])} is not "
                "supported; ferry loads models from its repository (import a new version "
                "with `ferry import`)")
        await self.engine.load_model(call_of(request), name)
        return Response(status_code=200)

    async def unload(self, request: Request) -> Response:
        name: str = request.path_params["model"]
        doc = await _optional_json(request, self.ctx)
        parameters = doc.get("parameters", {})
        if not isinstance(parameters, dict):
            raise InputError(f"unload {quote_name(name)}: 'parameters' must be a JSON object")
        # unload_dependents is accepted and has nothing to act on: ferry has no ensembles.
        unknown = sorted(set(parameters) - {"unload_dependents"})
        if unknown:
            raise InputError(
                f"unload {quote_name(name)}: unknown parameter {quote_name(unknown[0])}")
        if not isinstance(parameters.get("unload_dependents", False), bool):
            raise InputError(f"unload {quote_name(name)}: 'unload_dependents' must be true "
                             "or false")
        await self.engine.unload_model(call_of(request), name)
        return Response(status_code=200)


async def infer_body(ctx: RestContext, call: CallContext, model: str, version: str | None,
                     body: bytes, header_length: str | None) -> tuple[bytes, int | None, str]:
    """Answer a V2 infer body.

    Returns:
        The answer, its JSON header's length when binary data follows, and the version.

    Raises:
        FerryError: anything wrong with the body or the model (the caller answers 4xx).
    """
    began = perf_counter()
    head, binary = split_body(body, header_length)
    infer_request = decode_request(parse_json(head, what="inference request"), binary,
                                   model, version)
    ctx.metrics.stage("decode", model=model, seconds=perf_counter() - began)
    result = await ctx.engine.infer(call, infer_request)
    began = perf_counter()
    payload, out_length = encode_response(result, infer_request)
    ctx.metrics.stage("encode", model=model, seconds=perf_counter() - began)
    return payload, out_length, result.model_version


def metadata_document(meta: ModelMetadata) -> dict[str, Any]:
    """The V2 model metadata object of a model."""
    def tensors(specs: Any) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]

    return {"name": meta.name, "versions": meta.versions, "platform": meta.platform,
            "inputs": tensors(meta.inputs), "outputs": tensors(meta.outputs)}


async def _optional_json(request: Request, ctx: RestContext) -> dict[str, Any]:
    """The JSON object of a body that may be empty (repository requests)."""
    check_content_type(request)
    body = await read_body(request, ctx.max_body_bytes)
    if not body.strip():
        return {}
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise InputError("the request body must be a JSON object")
    return doc
