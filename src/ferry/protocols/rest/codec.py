"""V2 inference requests and responses in JSON (with the binary extension) <-> ferry types.

Decoding checks what only the wire can get wrong (the request's structure, each tensor's
shape against its data, datatype names, binary sizes) and names the input and field at
fault; the engine then checks the tensors against the model's signature. Data goes from
JSON lists to a numpy array of the declared datatype in one conversion, and from binary data
with no copy at all (:mod:`ferry.protocols.rest.binary`).
"""

from __future__ import annotations

import reprlib
from math import prod
from typing import Any

import numpy as np
import orjson

from ferry.errors import InputError, quote_name
from ferry.inference import InferRequest, InferResponse, RequestedOutput, Tensor
from ferry.protocols.rest.binary import decode_tensor, encode_tensor
from ferry.signature import (
    DATATYPES,
    MAX_DIM,
    MAX_ELEMENTS,
    MAX_RANK,
    check_shape,
    format_shape,
    values_as,
)

__all__ = ["convert", "decode_request", "encode_response", "json_data", "json_value",
           "tensor_from_json"]

_SCALARS = (str, int, float, bool)


def decode_request(doc: Any, binary: memoryview, model: str,
                   version: str | None) -> InferRequest:
    """Decode a parsed V2 inference request (and its binary section) for the engine.

    Args:
        doc: the parsed JSON header.
        binary: the bytes after the JSON header (empty without the binary extension).
        model: the model name from the path.
        version: the version from the path, or None.

    Raises:
        InputError: the request is malformed; the message names the field and input.
    """
    if not isinstance(doc, dict):
        raise InputError(f"the inference request must be a JSON object, got {_kind(doc)}")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InputError("the inference request needs 'inputs': a non-empty list of tensors")
    inputs: list[Tensor] = []
    offset = 0
    seen: set[str] = set()
    for index, item in enumerate(raw_inputs):
        tensor, offset = _decode_input(item, index, binary, offset)
        if tensor.name in seen:
            raise InputError(f"input {quote_name(tensor.name)} is given twice")
        seen.add(tensor.name)
        inputs.append(tensor)
    if offset != len(binary):
        raise InputError(
            f"the binary data has {len(binary) - offset} bytes after the last tensor; the "
            f"binary_data_size parameters of the inputs add up to {offset}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InputError(f"'id' must be a string, got {_kind(request_id)}")
    return InferRequest(
        model_name=model, model_version=version, inputs=inputs, id=request_id,
        outputs=_decode_outputs(doc.get("outputs")),
        parameters=_parameters(doc.get("parameters"), "request"),
    )


def _decode_input(item: Any, index: int, binary: memoryview,
                  offset: int) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise InputError(f"inputs[{index}] must be a JSON object, got {_kind(item)}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"inputs[{index}] needs a 'name' (a non-empty string)")
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InputError(
            f"input {quote_name(name)}: unknown datatype {_shown(datatype)}; expected one of "
            f"{', '.join(DATATYPES)}")
    shape = _shape(item.get("shape"), name)
    raw = item.get("parameters")
    parameters = {} if raw is None else _parameters(raw, f"input {quote_name(name)}")
    size = parameters.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InputError(
                f"input {quote_name(name)}: binary_data_size must be a non-negative integer")
        if "data" in item:
            raise InputError(f"input {quote_name(name)}: has both 'data' and binary_data_size")
        end = offset + size
        if end > len(binary):
            raise InputError(
                f"input {quote_name(name)}: binary_data_size {size} at offset {offset} is beyond "
                f"the {len(binary)} bytes of binary data (is Inference-Header-Content-Length set?)")
        array = decode_tensor(binary[offset:end], name, datatype, shape)
        return Tensor(name, datatype, shape, array, parameters), end
    if "data" not in item:
        raise InputError(
            f"input {quote_name(name)}: needs 'data' (or binary data with binary_data_size)")
    return Tensor(name, datatype, shape, tensor_from_json(item["data"], name, datatype, shape),
                  parameters), offset


def tensor_from_json(data: Any, name: str, datatype: str,
                     shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """Convert JSON ``data`` (flat or nested) to an array of ``datatype`` and ``shape``.

    Raises:
        InputError: values of the wrong kind (strings for numbers, floats for integers...),
            ragged nesting, or a number of values that does not match the shape.
    """
    if not isinstance(data, list) and not isinstance(data, _SCALARS):
        raise InputError(
            f"input {quote_name(name)}: 'data' must be a list of values, got {_kind(data)}")
    array = convert(data, name, datatype)
    want = prod(shape)
    if array.size != want:
        raise InputError(
            f"input {quote_name(name)}: shape {format_shape(shape)} needs {want} values, "
            f"'data' has {array.size}")
    return array if array.shape == shape else array.reshape(shape)


def convert(data: Any, name: str, datatype: str) -> np.ndarray[Any, Any]:
    """JSON values -> an array of ``datatype`` (:func:`ferry.signature.as_array`'s rules).

    Raises:
        InputError: as ``as_array``, and for numbers too large for a float datatype
            (1e6 in FP16 would silently become infinity).
    """
    if datatype == "UINT64":
        return _uint64(data, name)
    try:
        with np.errstate(over="raise"):
            return values_as(name, datatype, data)
    except FloatingPointError:
        limit = float(np.finfo(DATATYPES[datatype]).max)
        raise InputError(
            f"input {quote_name(name)}: a value is out of range for {datatype} "
            f"(largest magnitude {limit:g})") from None


def _uint64(data: Any, name: str) -> np.ndarray[Any, Any]:
    # numpy turns [1, 2**64 - 1] into float64 (no integer type holds both int64 and uint64
    # values), losing precision; convert element by element instead.
    array = np.asarray(data, dtype=object)
    flat = array.reshape(-1)
    for value in flat:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(
                f"input {quote_name(name)}: expected UINT64 values, got {_kind(value)}")
        if not 0 <= value < 1 << 64:
            raise InputError(f"input {quote_name(name)}: value {value} is out of range for UINT64")
    return array.astype(np.uint64)


def _shape(value: Any, name: str) -> tuple[int, ...]:
    """The shape of an input, within the bounds of :func:`ferry.signature.check_shape`."""
    if type(value) is list and len(value) <= MAX_RANK:
        span = 1
        for d in value:  # a loop, not all(<generator>): this runs for every tensor
            if type(d) is not int or not 0 <= d <= MAX_DIM:
                break
            span *= d or 1
        else:
            if span <= MAX_ELEMENTS:
                return tuple(value)
    if not isinstance(value, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise InputError(
            f"input {quote_name(name)}: 'shape' must be a list of non-negative integers, got "
            f"{reprlib.repr(value) if isinstance(value, list) else _kind(value)}")
    check_shape(f"input {quote_name(name)}", value)  # the message for the bound exceeded
    return tuple(value)


def _decode_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InputError(f"'outputs' must be a list of {{\"name\": ...}}, got {_kind(value)}")
    outputs = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InputError(f"outputs[{index}] must be an object with a 'name' string")
        name = item["name"]
        outputs.append(RequestedOutput(name, _parameters(item.get("parameters"),
                                                         f"output {quote_name(name)}")))
    return outputs


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where}: 'parameters' must be a JSON object, got {_kind(value)}")
    for key, item in value.items():
        if not isinstance(item, _SCALARS):
            raise InputError(
                f"{where}: parameter {quote_name(key)} must be a string, number or boolean, "
                f"got {_kind(item)}")
    return value


def encode_response(response: InferResponse, request: InferRequest) -> tuple[bytes, int | None]:
    """Encode an engine response as a V2 JSON body, with binary outputs where asked.

    An output goes binary when its requested output says ``binary_data: true``, or, when it
    says nothing, when the request's ``binary_data_output`` parameter is true. A BYTES output
    that is not valid UTF-8 cannot be a JSON string, so it is always sent binary.

    Returns:
        The body, and the JSON header's length when binary data follows it (else None).
    """
    default = request.parameters.get("binary_data_output") is True
    wanted: dict[str, bool] = {}
    for requested in request.outputs or ():
        flag = requested.parameters.get("binary_data")
        wanted[requested.name] = default if flag is None else flag is True
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in response.outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype,
                                 "shape": list(tensor.data.shape)}
        as_binary = wanted.get(tensor.name, default)
        data = None if as_binary else json_data(tensor.data, tensor.datatype)
        if data is None:
            blob = encode_tensor(tensor.data, tensor.datatype)
            entry["parameters"] = {**tensor.parameters, "binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            if tensor.parameters:
                entry["parameters"] = tensor.parameters
            entry["data"] = data
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model_name,
                           "model_version": response.model_version}
    if request.id is not None:
        doc["id"] = request.id
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join((header, *blobs)), len(header)


def json_data(array: np.ndarray[Any, Any], datatype: str) -> Any:
    """A flat, JSON-serialisable view of ``array`` (None for BYTES that are not UTF-8).

    Numeric arrays are handed to orjson as contiguous 1-D arrays, which it writes natively.
    """
    if datatype == "BYTES":
        try:
            return [v.decode("utf-8") if isinstance(v, bytes) else str(v)
                    for v in array.reshape(-1)]
        except UnicodeDecodeError:
            return None
    return np.ascontiguousarray(array).reshape(-1)


def json_value(array: Any) -> Any:
    """A nested (natural-shape) JSON value for the simple APIs (``/predict``, TF Serving).

    BYTES elements become strings; bytes that are not UTF-8 show U+FFFD where they break
    (these APIs have no binary form; V2 infer returns such outputs losslessly).
    """
    array = np.asarray(array)
    if array.ndim == 0:
        item = array.item()
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else item
    if array.dtype.kind == "O":
        return [json_value(a) for a in array]
    return np.ascontiguousarray(array)


def _shown(value: Any) -> str:
    """A client's value in a message: a string quoted and cut, anything else abbreviated."""
    return quote_name(value) if isinstance(value, str) else reprlib.repr(value)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
