"""A small Python client for ferry's servers (or any Open Inference Protocol server).

It needs no server extras: the gRPC client needs only ``grpcio`` and ``protobuf``
(``pip install 'ferry[grpc]'``), imported when a :class:`GrpcClient` is made. Errors come
back as ferry's own (:class:`~ferry.errors.InputError` for a bad tensor,
:class:`~ferry.errors.NotFoundError` for an unknown model, ...), with the server's message.
:class:`Client` is what the gRPC and REST clients (:mod:`ferry.client_rest`) share; tensors
are coded by :mod:`ferry.codec` on both, as on the server.

Example, against ``make serve``::

    from ferry.client import GrpcClient
    with GrpcClient("127.0.0.1:8001") as client:
        print(client.predict("digits", [[0.0] * 64]))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import numpy as np

from ferry.codec.request import infer_request, named_tensors
from ferry.errors import (
    AuthenticationError,
    DeadlineExceededError,
    ErrorCode,
    FerryError,
    InputError,
    InternalError,
    MissingDependencyError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
)
from ferry.inference import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    RequestedOutput,
    ServerMetadata,
)
from ferry.signature import TensorSpec, as_array

__all__ = ["Client", "GrpcClient", "request_of", "server_error"]


class Client(ABC):
    """What both clients share.

    :meth:`predict` over each client's own metadata and inference calls, and closing as a
    context manager.
    """

    def __init__(self) -> None:
        self._inputs: dict[tuple[str, str | None], tuple[TensorSpec, ...]] = {}

    @abstractmethod
    def close(self) -> None:
        """Close the connection(s)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @abstractmethod
    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """A model's versions, platform and tensors."""

    @abstractmethod
    def infer(self, model: str, inputs: Mapping[str, Any], *, version: str | None = None,
              outputs: Sequence[str] | None = None, id: str | None = None,
              parameters: Mapping[str, Any] | None = None) -> InferResponse:
        """Run one inference.

        Args:
            model: the model's name.
            inputs: input name -> array (numpy arrays keep their dtype; string or bytes
                arrays are sent as BYTES).
            version: a version, or None for the server's choice (the newest).
            outputs: the outputs wanted, or None for all.
            id: a request id, echoed in the response.
            parameters: request parameters.

        Returns:
            The response; ``outputs`` hold numpy arrays, BYTES ones as object arrays of bytes.

        Raises:
            InputError, NotFoundError, RateLimitedError, ...: what the server answered.
        """

    def predict(self, model: str, data: Any, *, version: str | None = None) -> np.ndarray[Any, Any]:
        """Run a single-input model on ``data`` and return its first output.

        This is the seed's ``/predict`` on any door: ``data`` is nested lists or an array of
        rows; the input's name and datatype come from the model's metadata (asked once).

        Raises:
            InputError: the model has several inputs, or ``data`` does not fit the input.
        """
        key = (model, version)
        if key not in self._inputs:
            self._inputs[key] = self.model_metadata(model, version).inputs
        specs = self._inputs[key]
        if len(specs) != 1:
            raise InputError(
                f"model {model!r} has {len(specs)} inputs "
                f"({', '.join(repr(s.name) for s in specs)}); use infer() with a dict"
            )
        array = as_array(specs[0], data)
        response = self.infer(model, {specs[0].name: array}, version=version)
        return response.outputs[0].data


def request_of(model: str, inputs: Mapping[str, Any], version: str | None,
               outputs: Sequence[str] | None, id: str | None,
               parameters: Mapping[str, Any] | None) -> InferRequest:
    """The request :meth:`Client.infer`'s arguments describe, for either client to send."""
    return infer_request(
        model, named_tensors(inputs), model_version=version, id=id,
        outputs=[RequestedOutput(n) for n in outputs] if outputs else None,
        parameters=dict(parameters or {}))


# ------------------------------------------------------------------------------ gRPC

#: gRPC status name -> the ferry error a client raises for it.
_ERRORS: dict[ErrorCode, type[FerryError]] = {
    kind.code: kind for kind in (InputError, NotFoundError, RateLimitedError,
                                 DeadlineExceededError, UnavailableError, AuthenticationError,
                                 PermissionDeniedError)
}


def server_error(code: ErrorCode | None, message: str, retry_after: float | None) -> FerryError:
    """The ferry error a client raises for a server's refusal, on either door.

    Each door maps its own status (gRPC code, HTTP status) to an :class:`ErrorCode`; the
    error classes come from this one table, so both clients raise the same error for the
    same refusal. An unknown code is an :class:`InternalError`.

    Args:
        code: the refusal's code, or None when the status maps to none.
        message: the server's message.
        retry_after: the server's back-off in seconds, if it gave one (default 1 s).
    """
    kind = _ERRORS.get(code, InternalError) if code is not None else InternalError
    if kind is RateLimitedError or kind is UnavailableError:
        return kind(message, retry_after=1.0 if retry_after is None else retry_after)
    return kind(message)


class GrpcClient(Client):
    """Blocking client for the ``inference.GRPCInferenceService`` (V2 gRPC protocol).

    Tensors travel as raw contents (little-endian bytes), the fast path of the protocol.

    Args:
        target: ``host:port`` of the server's gRPC port.
        timeout: seconds each call may take (the gRPC deadline); None waits forever.
        max_message_bytes: the largest message sent or received.

    Raises:
        MissingDependencyError: grpcio or protobuf is not installed.
    """

    def __init__(self, target: str = "127.0.0.1:8001", *, timeout: float | None = 30.0,
                 max_message_bytes: int = 64 << 20) -> None:
        try:
            import grpc

            from ferry.protocols.grpc import convert
            from ferry.protocols.grpc._generated import inference_pb2, inference_pb2_grpc
        except ImportError:
            raise MissingDependencyError("the gRPC client", "grpc") from None
        super().__init__()
        self._grpc = grpc
        self._pb = inference_pb2
        self._convert = convert
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ])
        self._stub = inference_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self.target = target
        self.timeout = timeout

    # ----------------------------------------------------------------- plumbing

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def _call(self, method: str, message: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(
                message, timeout=self.timeout if timeout is None else timeout)
        except self._grpc.RpcError as error:
            raise _ferry_error(error, self.target) from None

    # ------------------------------------------------------------ health, metadata

    def live(self) -> bool:
        """Whether the server is live."""
        return bool(self._call("ServerLive", self._pb.ServerLiveRequest()).live)

    def ready(self) -> bool:
        """Whether the server is ready (every model it serves is)."""
        return bool(self._call("ServerReady", self._pb.ServerReadyRequest()).ready)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether a model (version) is ready."""
        request = self._pb.ModelReadyRequest(name=name, version=version or "")
        return bool(self._call("ModelReady", request).ready)

    def server_metadata(self) -> ServerMetadata:
        """The server's name, version and extensions."""
        meta = self._call("ServerMetadata", self._pb.ServerMetadataRequest())
        return ServerMetadata(meta.name, meta.version, list(meta.extensions))

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """A model's versions, platform and tensors.

        Raises:
            NotFoundError: no such model or version.
        """
        meta = self._call("ModelMetadata",
                          self._pb.ModelMetadataRequest(name=name, version=version or ""))

        def specs(tensors: Any) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(name=t.name, datatype=t.datatype, shape=tuple(t.shape))
                         for t in tensors)

        return ModelMetadata(meta.name, list(meta.versions), meta.platform,
                             specs(meta.inputs), specs(meta.outputs))

    # ------------------------------------------------------------------- inference

    def infer(self, model: str, inputs: Mapping[str, Any], *, version: str | None = None,
              outputs: Sequence[str] | None = None, id: str | None = None,
              parameters: Mapping[str, Any] | None = None,
              timeout: float | None = None) -> InferResponse:
        """Run one inference (:meth:`Client.infer`), tensors as raw contents.

        ``timeout`` is this call's deadline in seconds (default: the client's).
        """
        request = request_of(model, inputs, version, outputs, id, parameters)
        message = self._call("ModelInfer", self._convert.encode_request(request), timeout)
        return self._convert.decode_response(message)


def _ferry_error(error: Any, target: str) -> FerryError:
    code = error.code()
    details = error.details() or code.name
    if code.name == "UNAVAILABLE" and "connect" in details.lower():
        return UnavailableError(f"cannot reach the gRPC server at {target}: {details}",
                                hint="is `ferry serve` running, and on this port?")
    pushback = dict(error.trailing_metadata() or ()).get("grpc-retry-pushback-ms")
    return server_error(ErrorCode.__members__.get(code.name), details,
                        int(pushback) / 1000 if pushback and pushback.isdigit() else None)
