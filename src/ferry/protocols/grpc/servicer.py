"""``GRPCInferenceService`` on ``grpc.aio``: decode, call the engine, encode.

Every RPC is a thin adapter over the engine facade: it builds the call's context
(:func:`~ferry.protocols.grpc.call.call_context`: request id, peer, deadline,
credentials), passes it to the engine, whose policy chain sees every call, and answers.
Validation, batching and admission all happen in the engine, so REST and gRPC answer
alike. Errors leave as gRPC statuses through :mod:`ferry.protocols.grpc.errors`; a bug is
logged with its traceback and answered INTERNAL with an error id, never UNKNOWN and never
with the traceback itself.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc

from ferry.engine import Engine
from ferry.errors import FerryError, InputError, InternalError, quote_name
from ferry.inference import ModelMetadata
from ferry.observability.logging import FIELD_MAX, LineBudget, clip
from ferry.observability.logging import request_id as log_request_id
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from ferry.protocols.grpc.call import call_context
from ferry.protocols.grpc.convert import decode_request, encode_response
from ferry.protocols.grpc.errors import status_of

__all__ = ["FALLBACK_METADATA", "InferenceServicer"]

logger = logging.getLogger("ferry.protocols.grpc")
#: Refusals are logged one line each, up to this budget a second (the rest are counted).
_refusal_lines = LineBudget(logger, "refused gRPC calls")

T = TypeVar("T")
Context: TypeAlias = grpc.aio.ServicerContext

#: Load/unload parameters ferry understands; Triton's others (``config``, ``file:...``)
#: would replace a model's files or configuration, which in ferry goes through the repository.
_UNLOAD_PARAMETERS = frozenset({"unload_dependents"})  # no ensembles: nothing depends on a model

#: Trailing metadata naming the fallback (``model:version``) that answered a ModelInfer in
#: place of the version asked for; the response's model_name and model_version say it too.
FALLBACK_METADATA = "x-ferry-fallback"


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The V2 inference service, answered by an :class:`~ferry.engine.Engine`.

    Args:
        engine: the started (or starting) engine; the servicer never starts or stops it.
        client_certificates: the port requires client certificates (mTLS): each call
            context carries the verified certificate's common name.
    """

    def __init__(self, engine: Engine, *, client_certificates: bool = False) -> None:
        self._engine = engine
        self._metrics = engine.metrics
        self._call = (functools.partial(call_context, certificates=True)
                      if client_certificates else call_context)

    # ------------------------------------------------------------------ health

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context
                         ) -> pb.ServerLiveResponse:
        """Whether the server answers at all."""
        call = self._call(context)
        return await _answer(context, lambda: pb.ServerLiveResponse(
            live=self._engine.live(call)))

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context
                          ) -> pb.ServerReadyResponse:
        """Whether every configured model is ready."""
        call = self._call(context)
        return await _answer(context, lambda: pb.ServerReadyResponse(
            ready=self._engine.ready(call)))

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context
                         ) -> pb.ModelReadyResponse:
        """Whether one model (version) is ready; an unknown one is simply not ready."""
        call = self._call(context)
        return await _answer(context, lambda: pb.ModelReadyResponse(
            ready=self._engine.model_ready(call, request.name, request.version or None)))

    # ---------------------------------------------------------------- metadata

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context
                             ) -> pb.ServerMetadataResponse:
        """Server name, version and supported extensions."""
        call = self._call(context)

        def answer() -> pb.ServerMetadataResponse:
            meta = self._engine.server_metadata(call)
            return pb.ServerMetadataResponse(name=meta.name, version=meta.version,
                                             extensions=meta.extensions)

        return await _answer(context, answer)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context
                            ) -> pb.ModelMetadataResponse:
        """A model's versions, platform and tensors (NOT_FOUND for an unknown one)."""
        call = self._call(context)
        return await _answer(context, lambda: _metadata_message(self._engine.model_metadata(
            call, _required(request.name, "name"), request.version or None)))

    # --------------------------------------------------------------- inference

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context
                         ) -> pb.ModelInferResponse:
        """Run one inference; the call's gRPC deadline is its deadline in the engine."""
        # One coroutine (no inner helper) and each field read once: at a few microseconds
        # of ferry per call, the frames and protobuf field reads are a visible share.
        call = self._call(context, request.id)
        token = log_request_id.set(call.request_id)
        metrics = self._metrics
        model = request.model_name
        version = request.model_version
        start = time.perf_counter()
        try:
            infer_request = decode_request(request)
            decoded = time.perf_counter()
            metrics.stage("decode", model=model, seconds=decoded - start)
            response = await self._engine.infer(call, infer_request)
            version = response.model_version
            if call.fallback is not None:  # a configured fallback answered (docs/serving.md)
                context.set_trailing_metadata(((FALLBACK_METADATA, call.fallback),))
            computed = time.perf_counter()
            # Answer in the representation the client used: raw for raw (Triton's client
            # reads nothing else), typed for typed.
            message = encode_response(response, raw=bool(request.raw_input_contents))
            done = time.perf_counter()
            metrics.stage("encode", model=model, seconds=done - computed)
        except FerryError as error:
            await self._refuse(context, request, version, start, error)
        except Exception:  # a bug: keep the trace in the log, give the client an id
            await self._refuse(context, request, version, start, _internal("ModelInfer"))
        finally:
            log_request_id.reset(token)
        metrics.request(model=model, version=version, protocol="grpc", status="OK",
                        seconds=done - start)
        return message

    async def _refuse(self, context: Context, request: pb.ModelInferRequest, version: str,
                      start: float, error: FerryError) -> NoReturn:
        status = status_of(error)
        # The name and the message carry what the client sent: clipped, so a client cannot
        # write more log than it sends.
        if _refusal_lines.allow():
            model = clip(request.model_name)
            logger.info("refused %s with %s: %s", model or "(no model)", status.code.name,
                        clip(error.message, 2 * FIELD_MAX),
                        extra={"model": model, "status": status.code.name})
        self._metrics.request(model=request.model_name, version=version, protocol="grpc",
                              status=status.code.name, seconds=time.perf_counter() - start)
        await context.abort(status.code, status.details, status.trailing_metadata)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    # -------------------------------------------------------- model repository

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Context
                              ) -> pb.RepositoryIndexResponse:
        """Every model of the repository with its state (only ready ones if asked)."""
        call = self._call(context)
        return await _answer(context, lambda: pb.RepositoryIndexResponse(models=[
            pb.RepositoryIndexResponse.ModelIndex(
                name=e.name, version=e.version or "", state=e.state, reason=e.reason)
            for e in self._engine.repository_index(call, ready_only=request.ready)
        ]))

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest,
                                  context: Context) -> pb.RepositoryModelLoadResponse:
        """Load a model, or reload it to its newest version (a hot swap)."""
        call = self._call(context)

        async def load() -> pb.RepositoryModelLoadResponse:
            name = _repository_model(request)
            _check_parameters(request.parameters, frozenset(), "load")
            await self._engine.load_model(call, name)
            return pb.RepositoryModelLoadResponse(model_name=name, isLoaded=True)

        return await _answer_async(context, load)

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                                    context: Context) -> pb.RepositoryModelUnloadResponse:
        """Unload a model after its in-flight requests finish."""
        call = self._call(context)

        async def unload() -> pb.RepositoryModelUnloadResponse:
            name = _repository_model(request)
            _check_parameters(request.parameters, _UNLOAD_PARAMETERS, "unload")
            await self._engine.unload_model(call, name)
            return pb.RepositoryModelUnloadResponse(model_name=name, isUnloaded=True)

        return await _answer_async(context, unload)


# ------------------------------------------------------------------------- helpers


async def _answer(context: Context, build: Callable[[], T]) -> T:
    try:
        return build()
    except FerryError as error:
        await _abort(context, error)
    except Exception:
        await _abort(context, _internal("metadata"))


async def _answer_async(context: Context, build: Callable[[], Awaitable[T]]) -> T:
    try:
        return await build()
    except FerryError as error:
        await _abort(context, error)
    except Exception:
        await _abort(context, _internal("repository"))


async def _abort(context: Context, error: FerryError) -> NoReturn:
    status = status_of(error)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def _internal(where: str) -> FerryError:
    error_id = uuid.uuid4().hex[:12]
    logger.exception("internal error in %s (error id %s)", where, error_id)
    return InternalError(f"internal error in {where}; the server log has error id {error_id}")


def _required(value: str, field: str) -> str:
    if not value:
        raise InputError(f"{field} is empty; name the model")
    return value


def _repository_model(request: pb.RepositoryModelLoadRequest | pb.RepositoryModelUnloadRequest
                      ) -> str:
    # KServe's proto has model_name where Triton's (ferry's) has repository_name; a request
    # with only that field filled is KServe's dialect, naming the model.
    return _required(request.model_name or request.repository_name, "model_name")


def _check_parameters(parameters: Mapping[str, Any], allowed: frozenset[str], verb: str) -> None:
    unknown = sorted(set(parameters) - allowed)
    if unknown:
        raise InputError(
            f"{verb} parameter {quote_name(unknown[0])} is not supported: ferry {verb}s "
            "models from its repository as imported; use `ferry import` to add or change a "
            "model"
            + (f" (supported: {', '.join(sorted(allowed))})" if allowed else "")
        )


def _metadata_message(meta: ModelMetadata) -> pb.ModelMetadataResponse:
    def tensors(specs: Any) -> list[pb.ModelMetadataResponse.TensorMetadata]:
        return [pb.ModelMetadataResponse.TensorMetadata(
            name=s.name, datatype=s.datatype, shape=s.shape) for s in specs]

    return pb.ModelMetadataResponse(
        name=meta.name, versions=meta.versions, platform=meta.platform,
        inputs=tensors(meta.inputs), outputs=tensors(meta.outputs),
    )
