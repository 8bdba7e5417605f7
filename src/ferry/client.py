"""A small Python client for ferry's servers (or any Open Inference Protocol server).

It needs no server extras: the gRPC client needs only ``grpcio`` and ``protobuf``
(``pip install 'ferry[grpc]'``), imported when a :class:`GrpcClient` is made. Errors come
back as ferry's own (:class:`~ferry.errors.InputError` for a bad tensor,
:class:`~ferry.errors.NotFoundError` for an unknown model, ...), with the server's message.

Example, against ``make serve``::

    from ferry.client import GrpcClient
    with GrpcClient("127.0.0.1:8001") as client:
        print(client.predict("digits", [[0.0] * 64]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import numpy as np

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
    Tensor,
)
from ferry.signature import TensorSpec, as_array, datatype_of

__all__ = ["GrpcClient"]


# ------------------------------------------------------------------------------ gRPC

#: gRPC status name -> the ferry error a client raises for it.
_GRPC_ERRORS: dict[str, type[FerryError]] = {
    ErrorCode.INVALID_ARGUMENT.value: InputError,
    ErrorCode.NOT_FOUND.value: NotFoundError,
    ErrorCode.RESOURCE_EXHAUSTED.value: RateLimitedError,
    ErrorCode.DEADLINE_EXCEEDED.value: DeadlineExceededError,
    ErrorCode.UNAVAILABLE.value: UnavailableError,
    ErrorCode.UNAUTHENTICATED.value: AuthenticationError,
    ErrorCode.PERMISSION_DENIED.value: PermissionDeniedError,
}


class GrpcClient:
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
        self._inputs: dict[tuple[str, str | None], tuple[TensorSpec, ...]] = {}

    # ----------------------------------------------------------------- plumbing

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

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
        """Run one inference.

        Args:
            model: the model's name.
            inputs: input name -> array (numpy arrays keep their dtype; string or bytes
                arrays are sent as BYTES).
            version: a version, or None for the server's choice (the newest).
            outputs: the outputs wanted, or None for all.
            id: a request id, echoed in the response.
            parameters: request parameters.
            timeout: this call's deadline in seconds (default: the client's).

        Returns:
            The response; ``outputs`` hold numpy arrays, BYTES ones as object arrays of bytes.

        Raises:
            InputError, NotFoundError, RateLimitedError, ...: what the server answered.
        """
        tensors = [_tensor(name, value) for name, value in inputs.items()]
        request = InferRequest(
            model_name=model, inputs=tensors, model_version=version, id=id,
            outputs=[RequestedOutput(n) for n in outputs] if outputs else None,
            parameters=dict(parameters or {}),
        )
        message = self._call("ModelInfer", self._convert.encode_request(request), timeout)
        return self._convert.decode_response(message)

    def predict(self, model: str, data: Any, *, version: str | None = None) -> np.ndarray[Any, Any]:
        """Run a single-input model on ``data`` and return its first output.

        This is the seed's ``/predict`` over gRPC: ``data`` is nested lists or an array of
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


def _tensor(name: str, value: Any) -> Tensor:
    array = np.asarray(value)
    if array.dtype.kind in "USO":  # strings are sent as UTF-8 BYTES elements
        array = as_array(TensorSpec(name=name, datatype="BYTES", shape=array.shape), array)
    return Tensor(name, datatype_of(array.dtype), array.shape, array)


def _ferry_error(error: Any, target: str) -> FerryError:
    code = error.code()
    details = error.details() or code.name
    if code.name == "UNAVAILABLE" and "connect" in details.lower():
        return UnavailableError(f"cannot reach the gRPC server at {target}: {details}",
                                hint="is `ferry serve` running, and on this port?")
    kind = _GRPC_ERRORS.get(code.name, InternalError)
    if kind is RateLimitedError or kind is UnavailableError:
        trailing = dict(error.trailing_metadata() or ())
        pushback = trailing.get("grpc-retry-pushback-ms")
        retry_after = int(pushback) / 1000 if pushback and pushback.isdigit() else 1.0
        return kind(details, retry_after=retry_after)
    return kind(details)
