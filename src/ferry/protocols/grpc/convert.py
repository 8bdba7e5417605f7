"""Conversion between the gRPC messages of the V2 protocol and :mod:`ferry.inference` types.

Raw contents (``raw_input_contents`` / ``raw_output_contents``) are the fast path, coded by
:mod:`ferry.codec.raw` as the REST binary extension is: a numeric tensor becomes a numpy
array over the request's bytes (no copy, no Python loop), and an output array is written out
with one ``tobytes``. Typed contents (``InferTensorContents``) cost one conversion per tensor,
which protobuf's repeated fields force anyway; they are gRPC's own and are coded here. The
request itself is built by :func:`ferry.codec.request.infer_request`, as on every door.

Every problem with a request is an :class:`~ferry.errors.InputError` naming the tensor and
what was expected versus what came; nothing here allocates memory from a claimed shape before
the data has been found to match it, so an absurd shape is an error, not a ``MemoryError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ferry.codec.raw import decode_raw, encode_raw
from ferry.codec.request import infer_request
from ferry.errors import InputError, quote_name
from ferry.inference import InferRequest, InferResponse, RequestedOutput, Tensor
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.signature import DATATYPES, check_shape, format_shape

__all__ = [
    "decode_parameters",
    "decode_request",
    "decode_response",
    "encode_parameters",
    "encode_request",
    "encode_response",
]

#: The ``InferTensorContents`` field of each datatype; FP16 travels as raw contents only.
TYPED_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

# The element type of each typed field on the wire (narrower datatypes are range-checked).
_FIELD_DTYPE: dict[str, np.dtype[Any]] = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}

# Request inputs and response outputs carry the same tensor fields.
_WireTensor = pb.ModelInferRequest.InferInputTensor | pb.ModelInferResponse.InferOutputTensor


# --------------------------------------------------------------------------- requests


def decode_request(message: pb.ModelInferRequest) -> InferRequest:
    """Turn a ``ModelInferRequest`` into an :class:`InferRequest`.

    Args:
        message: the request as it came off the wire.

    Raises:
        InputError: no model name, raw and typed contents mixed, a raw contents count that
            differs from the number of inputs, an unknown datatype, a bad shape, data whose
            length does not match the shape, a typed field that does not fit the datatype,
            or the same input twice.
    """
    inputs = message.inputs
    raw = message.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise InputError(
            f"raw_input_contents has {len(raw)} entries but the request has {len(inputs)} "
            "inputs; send exactly one raw entry per input, in the order of 'inputs'"
        )
    tensors: list[Tensor] = []
    for index, tensor in enumerate(inputs):
        if raw:
            if tensor.HasField("contents"):
                raise InputError(
                    f"input {quote_name(tensor.name)} has typed 'contents' but the request "
                    "also has raw_input_contents; use one or the other for all inputs"
                )
            tensors.append(_decode_raw(tensor, raw[index]))
        else:
            tensors.append(_decode_typed(tensor))
    wanted = message.outputs
    outputs = [
        RequestedOutput(out.name, decode_parameters(out.parameters)) for out in wanted
    ] if wanted else None
    return infer_request(
        message.model_name, tensors, model_version=message.model_version or None,
        id=message.id or None, outputs=outputs,
        parameters=decode_parameters(message.parameters),
    )


def _checked_shape(what: str, shape: Any) -> tuple[tuple[int, ...], int]:
    """The shape and element count, within :func:`ferry.signature.check_shape`'s bounds."""
    dims = tuple(shape)
    return dims, check_shape(what, dims)


def _datatype(what: str, datatype: str) -> str:
    if datatype not in DATATYPES:
        raise InputError(f"{what}: unknown datatype {quote_name(datatype)}; expected one of "
                         f"{', '.join(DATATYPES)}")
    return datatype


def _decode_raw(tensor: _WireTensor, data: bytes, role: str = "input") -> Tensor:
    name = tensor.name
    what = f"{role} {quote_name(name)}"
    datatype = _datatype(what, tensor.datatype)
    shape, _ = _checked_shape(what, tensor.shape)
    array = decode_raw(data, datatype, shape, name, role=role, source="raw contents")
    return Tensor(name, datatype, shape, array, decode_parameters(tensor.parameters))


def _decode_typed(tensor: _WireTensor, role: str = "input") -> Tensor:
    name = tensor.name
    what = f"{role} {quote_name(name)}"
    datatype = _datatype(what, tensor.datatype)
    shape, count = _checked_shape(what, tensor.shape)
    field = TYPED_FIELD.get(datatype)
    contents = tensor.contents
    present = [f.name for f, _ in contents.ListFields()]
    if field is None:  # FP16
        raise InputError(
            f"{what}: {datatype} has no typed contents field; send it in "
            "raw_input_contents (little-endian, 2 bytes per element)"
        )
    wrong = [f for f in present if f != field]
    if wrong:
        raise InputError(
            f"{what}: datatype {datatype} takes its data in contents.{field}, "
            f"but the request filled contents.{wrong[0]}"
        )
    values = getattr(contents, field)
    if len(values) != count:
        if not present and count:
            raise InputError(
                f"{what} has no data: expected {count} elements for shape "
                f"{format_shape(shape)} in contents.{field} or in raw_input_contents"
            )
        raise InputError(
            f"{what}: contents.{field} has {len(values)} elements but shape "
            f"{format_shape(shape)} needs {count}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return Tensor(name, datatype, shape, array.reshape(shape),
                      decode_parameters(tensor.parameters))
    wire = _FIELD_DTYPE[field]
    array = np.fromiter(values, dtype=wire, count=count)
    target = DATATYPES[datatype]
    if target != wire:
        info = np.iinfo(target)
        if count and (int(array.min()) < info.min or int(array.max()) > info.max):
            bad = int(array.min()) if int(array.min()) < info.min else int(array.max())
            raise InputError(
                f"{what}: value {bad} is out of range for {datatype} "
                f"[{info.min}, {info.max}]"
            )
        array = array.astype(target)
    return Tensor(name, datatype, shape, array.reshape(shape),
                  decode_parameters(tensor.parameters))


# -------------------------------------------------------------------------- responses


def encode_response(response: InferResponse, *, raw: bool = True) -> pb.ModelInferResponse:
    """Turn an :class:`InferResponse` into a ``ModelInferResponse``.

    Args:
        response: what the engine answered.
        raw: write every output to ``raw_output_contents`` (the fast path, and what
            Triton's client reads). When False, outputs go to typed ``contents`` unless one
            of them is FP16, which has no typed field; then all are raw, as the protocol
            forbids mixing the two.
    """
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
    )
    if response.parameters:
        encode_parameters(response.parameters, message.parameters)
    raw = raw or any(t.datatype not in TYPED_FIELD for t in response.outputs)
    outputs = message.outputs
    raw_contents = message.raw_output_contents
    for tensor in response.outputs:
        out = outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.data.shape)
        if tensor.parameters:
            encode_parameters(tensor.parameters, out.parameters)
        if raw:
            raw_contents.append(encode_raw(tensor.data, tensor.datatype))
        else:
            _typed_output(tensor, out.contents)
    return message


def _typed_output(tensor: Tensor, contents: pb.InferTensorContents) -> None:
    values = getattr(contents, TYPED_FIELD[tensor.datatype])
    if tensor.datatype == "BYTES":
        values.extend(
            v if isinstance(v, bytes) else str(v).encode("utf-8")
            for v in tensor.data.reshape(-1)
        )
    else:
        # tolist() first: protobuf converts Python numbers several times faster than
        # numpy scalars.
        values.extend(tensor.data.reshape(-1).tolist())


# ------------------------------------------------------------- the client's direction


def encode_request(request: InferRequest) -> pb.ModelInferRequest:
    """Turn an :class:`InferRequest` into a ``ModelInferRequest`` with raw contents.

    Used by :class:`ferry.client.GrpcClient` and the tests; the server's inverse is
    :func:`decode_request`.
    """
    message = pb.ModelInferRequest(
        model_name=request.model_name,
        model_version=request.model_version or "",
        id=request.id or "",
    )
    if request.parameters:
        encode_parameters(request.parameters, message.parameters)
    for tensor in request.inputs:
        item = message.inputs.add(name=tensor.name, datatype=tensor.datatype,
                                  shape=tensor.data.shape)
        if tensor.parameters:
            encode_parameters(tensor.parameters, item.parameters)
        message.raw_input_contents.append(encode_raw(tensor.data, tensor.datatype))
    for output in request.outputs or ():
        wanted = message.outputs.add(name=output.name)
        if output.parameters:
            encode_parameters(output.parameters, wanted.parameters)
    return message


def decode_response(message: pb.ModelInferResponse) -> InferResponse:
    """Turn a ``ModelInferResponse`` (raw or typed contents) into an :class:`InferResponse`.

    Raises:
        InputError: the response is malformed (raw contents that do not match an output's
            shape, an unknown datatype); the message says which output.
    """
    raw = message.raw_output_contents
    if raw and len(raw) != len(message.outputs):
        raise InputError(f"response has {len(message.outputs)} outputs but {len(raw)} raw "
                         "contents")
    outputs: list[Tensor] = []
    for index, tensor in enumerate(message.outputs):
        if raw:
            outputs.append(_decode_raw(tensor, raw[index], "output"))
        else:
            outputs.append(_decode_typed(tensor, "output"))
    return InferResponse(
        model_name=message.model_name,
        model_version=message.model_version,
        outputs=outputs,
        id=message.id or None,
        parameters=decode_parameters(message.parameters),
    )


# ------------------------------------------------------------------------- parameters


def decode_parameters(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """Turn a map of ``InferParameter`` into a dict of Python values (unset ones skipped)."""
    if not parameters:
        return {}
    decoded: dict[str, Any] = {}
    for key, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            decoded[key] = getattr(value, choice)
    return decoded


_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1


def encode_parameters(values: Mapping[str, Any], target: Any) -> None:
    """Write a dict of Python values into a protobuf map of ``InferParameter``.

    Booleans, integers (int64, or uint64 above its range), floats and strings keep their
    type; anything else, and integers beyond both ranges, are sent as their ``str``.
    """
    for key, value in values.items():
        param = target[key]
        if isinstance(value, bool | np.bool_):
            param.bool_param = bool(value)
        elif isinstance(value, int | np.integer) and _INT64[0] <= value <= _UINT64_MAX:
            if value > _INT64[1]:
                param.uint64_param = int(value)
            else:
                param.int64_param = int(value)
        elif isinstance(value, float | np.floating):
            param.double_param = float(value)
        else:
            param.string_param = str(value)
