"""V2 JSON documents (with the binary tensor data extension) <-> requests and responses.

The server decodes requests and encodes responses here; the REST client encodes requests and
decodes responses with the same functions, so a tensor object is read and written one way.
Documents are already parsed (or not yet serialised): the server uses orjson, the client the
standard library, and this module neither.

Decoding checks what only the wire can get wrong (the document's structure, each tensor's
shape against its data, datatype names, binary sizes) and names the tensor and field at
fault; the engine then checks the tensors against the model's signature. Data goes from
JSON lists to a numpy array of the declared datatype in one conversion, and from binary data
with no copy at all (:func:`ferry.codec.raw.decode_raw`).

With the binary extension a body is a JSON header of ``Inference-Header-Content-Length``
bytes followed by the raw data of each tensor whose parameters carry ``binary_data_size``,
in the order of the tensors in the JSON.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from math import prod
from typing import Any

import numpy as np

from ferry.codec.raw import decode_raw, encode_raw
from ferry.codec.request import infer_request
from ferry.errors import InputError, quote_name
from ferry.inference import InferRequest, InferResponse, RequestedOutput, Tensor
from ferry.signature import (
    DATATYPES,
    MAX_DIM,
    MAX_ELEMENTS,
    MAX_RANK,
    check_shape,
    format_shape,
    values_as,
)

__all__ = [
    "HEADER",
    "array_from_json",
    "decode_request",
    "decode_response",
    "json_data",
    "request_document",
    "response_document",
    "split_body",
    "tensor_from_json",
]

#: The header that gives the JSON part's length in a body with binary data.
HEADER = "inference-header-content-length"

_SCALARS = (str, int, float, bool)
_NO_BINARY = memoryview(b"")


def split_body(body: bytes, header_length: str | None) -> tuple[bytes | memoryview, memoryview]:
    """Split a body into its JSON part and its binary part (views, not copies).

    Args:
        body: the whole body.
        header_length: the ``Inference-Header-Content-Length`` header, or None.

    Raises:
        InputError: the header is not a number, or is larger than the body.
    """
    if header_length is None:
        return body, _NO_BINARY
    text = header_length.strip()
    # ASCII digits only, at most 18 of them: str.isdigit() also accepts '²' and
    # fullwidth digits, and int() of thousands of digits raises (a 500, not a 400).
    if not (0 < len(text) <= 18 and text.isascii() and text.isdigit()):
        raise InputError(
            f"Inference-Header-Content-Length {header_length[:40]!r} is not a number of bytes")
    size = int(text)
    if size > len(body):
        raise InputError(
            f"Inference-Header-Content-Length {size} is beyond the body of {len(body)} bytes")
    view = memoryview(body)
    return view[:size], view[size:]


# ------------------------------------------------------------------------------- decoding


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
    inputs = _decode_tensors(raw_inputs, binary, "input")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InputError(f"'id' must be a string, got {_kind(request_id)}")
    parameters = _parameters(doc.get("parameters"), "request")
    _check_flag(parameters, "binary_data_output", "request")
    return infer_request(
        model, inputs, model_version=version, id=request_id,
        outputs=_decode_outputs(doc.get("outputs")),
        parameters=parameters,
    )


def decode_response(doc: Any, binary: memoryview) -> InferResponse:
    """Decode a parsed V2 inference response (and its binary section): the client's side.

    Raises:
        InputError: the response is malformed; the message names the field and output.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list):
        raise InputError("the inference response must be a JSON object with an 'outputs' list")
    request_id = doc.get("id")
    return InferResponse(
        model_name=str(doc.get("model_name", "")),
        model_version=str(doc.get("model_version", "")),
        outputs=_decode_tensors(doc["outputs"], binary, "output"),
        id=None if request_id is None else str(request_id),
        parameters=_parameters(doc.get("parameters"), "response"),
    )


def _decode_tensors(items: list[Any], binary: memoryview, role: str) -> list[Tensor]:
    """Every tensor object of ``inputs`` / ``outputs``, consuming the binary part in order."""
    tensors: list[Tensor] = []
    offset = 0
    for index, item in enumerate(items):
        tensor, offset = _decode_tensor(item, index, binary, offset, role)
        tensors.append(tensor)
    if offset != len(binary):
        raise InputError(
            f"the binary data has {len(binary) - offset} bytes after the last tensor; the "
            f"binary_data_size parameters of the {role}s add up to {offset}")
    return tensors


def _decode_tensor(item: Any, index: int, binary: memoryview, offset: int,
                   role: str) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise InputError(f"{role}s[{index}] must be a JSON object, got {_kind(item)}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{role}s[{index}] needs a 'name' (a non-empty string)")
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InputError(
            f"{role} {quote_name(name)}: unknown datatype {_shown(datatype)}; expected one of "
            f"{', '.join(DATATYPES)}")
    shape = _shape(item.get("shape"), name, role)
    raw = item.get("parameters")
    parameters = {} if raw is None else _parameters(raw, f"{role} {quote_name(name)}")
    size = parameters.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InputError(
                f"{role} {quote_name(name)}: binary_data_size must be a non-negative integer")
        if "data" in item:
            raise InputError(f"{role} {quote_name(name)}: has both 'data' and binary_data_size")
        end = offset + size
        if end > len(binary):
            raise InputError(
                f"{role} {quote_name(name)}: binary_data_size {size} at offset {offset} is "
                f"beyond the {len(binary)} bytes of binary data (is "
                "Inference-Header-Content-Length set?)")
        array = decode_raw(binary[offset:end], datatype, shape, name, role=role)
        return Tensor(name, datatype, shape, array, parameters), end
    if "data" not in item:
        raise InputError(
            f"{role} {quote_name(name)}: needs 'data' (or binary data with binary_data_size)")
    return Tensor(name, datatype, shape,
                  tensor_from_json(item["data"], name, datatype, shape, role),
                  parameters), offset


def tensor_from_json(data: Any, name: str, datatype: str, shape: tuple[int, ...],
                     role: str = "input") -> np.ndarray[Any, Any]:
    """Convert JSON ``data`` (flat or nested) to an array of ``datatype`` and ``shape``.

    Raises:
        InputError: values of the wrong kind (strings for numbers, floats for integers...),
            ragged nesting, or a number of values that does not match the shape.
    """
    if not isinstance(data, list) and not isinstance(data, _SCALARS):
        raise InputError(
            f"{role} {quote_name(name)}: 'data' must be a list of values, got {_kind(data)}")
    try:
        array = array_from_json(data, name, datatype, role)
    except InputError:
        # A server writes NaN and the infinities of a float output as null (JSON has no
        # number for them); a client reads those back as NaN rather than refuse the answer.
        if role != "output" or DATATYPES[datatype].kind != "f":
            raise
        array = np.asarray(data, dtype=DATATYPES[datatype])
    want = prod(shape)
    if array.size != want:
        raise InputError(
            f"{role} {quote_name(name)}: shape {format_shape(shape)} needs {want} values, "
            f"'data' has {array.size}")
    return array if array.shape == shape else array.reshape(shape)


def array_from_json(data: Any, name: str, datatype: str,
                    role: str = "input") -> np.ndarray[Any, Any]:
    """JSON values -> an array of ``datatype`` (:func:`ferry.signature.as_array`'s rules).

    Raises:
        InputError: as ``as_array``, and for numbers too large for a float datatype
            (1e6 in FP16 would silently become infinity).
    """
    if datatype == "UINT64":
        _check_depth(data, name, role)
        return _uint64(data, name, role)
    try:
        with np.errstate(over="raise"):
            return values_as(name, datatype, data, role=role)
    except InputError:
        # numpy walks at most MAX_RANK (64) levels (orjson parses up to 1024) and refuses
        # deeper data as "not a rectangular array": name the depth instead.
        _check_depth(data, name, role)
        raise
    except FloatingPointError:
        limit = float(np.finfo(DATATYPES[datatype]).max)
        raise InputError(
            f"{role} {quote_name(name)}: a value is out of range for {datatype} "
            f"(largest magnitude {limit:g})") from None


def _check_depth(data: Any, name: str, role: str) -> None:
    """Refuse ``data`` nested more than MAX_RANK lists deep, naming its depth.

    The first element of each level is enough: deeper nesting elsewhere is ragged, which
    numpy refuses.
    """
    depth, probe = 0, data
    while type(probe) is list and probe:
        probe = probe[0]
        depth += 1
    if depth > MAX_RANK:
        raise InputError(
            f"{role} {quote_name(name)}: 'data' nests {depth} lists deep; a tensor has at "
            f"most {MAX_RANK} dimensions")


def _uint64(data: Any, name: str, role: str) -> np.ndarray[Any, Any]:
    # numpy turns [1, 2**64 - 1] into float64 (no integer type holds both int64 and uint64
    # values), losing precision; convert element by element instead.
    array = np.asarray(data, dtype=object)
    flat = array.reshape(-1)
    for value in flat:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(
                f"{role} {quote_name(name)}: expected UINT64 values, got {_kind(value)}")
        if not 0 <= value < 1 << 64:
            raise InputError(
                f"{role} {quote_name(name)}: value {value} is out of range for UINT64")
    return array.astype(np.uint64)


def _shape(value: Any, name: str, role: str) -> tuple[int, ...]:
    """The shape of a tensor, within the bounds of :func:`ferry.signature.check_shape`."""
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
            f"{role} {quote_name(name)}: 'shape' must be a list of non-negative integers, got "
            f"{reprlib.repr(value) if isinstance(value, list) else _kind(value)}")
    check_shape(f"{role} {quote_name(name)}", value)  # the message for the bound exceeded
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
        parameters = _parameters(item.get("parameters"), f"output {quote_name(name)}")
        _check_flag(parameters, "binary_data", f"output {quote_name(name)}")
        outputs.append(RequestedOutput(name, parameters))
    return outputs


def _check_flag(parameters: dict[str, Any], key: str, where: str) -> None:
    """Refuse a binary-extension flag that is not a JSON boolean (as Triton does)."""
    if key in parameters and not isinstance(parameters[key], bool):
        raise InputError(f"{where}: parameter {key!r} must be true or false, got "
                         f"{_kind(parameters[key])}")


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


# ------------------------------------------------------------------------------- encoding


def response_document(response: InferResponse, request: InferRequest
                      ) -> tuple[dict[str, Any], list[bytes]]:
    """A response as a V2 JSON document and the binary data that follows it, in order.

    An output goes binary when its requested output says ``binary_data: true``, or, when it
    says nothing, when the request's ``binary_data_output`` parameter is true. A BYTES output
    that is not valid UTF-8 cannot be a JSON string, so it is always sent binary.
    """
    default = request.parameters.get("binary_data_output") is True
    wanted: dict[str, bool] = {}
    for requested in request.outputs or ():
        flag = requested.parameters.get("binary_data")
        wanted[requested.name] = default if flag is None else flag is True
    outputs, blobs = _encode_tensors(response.outputs, wanted, default)
    doc: dict[str, Any] = {"model_name": response.model_name,
                           "model_version": response.model_version}
    if request.id is not None:
        doc["id"] = request.id
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = outputs
    return doc, blobs


def request_document(request: InferRequest, *, binary: bool
                     ) -> tuple[dict[str, Any], list[bytes]]:
    """A request as a V2 JSON document and its binary data: the client's side.

    Args:
        request: what to send (its model name and version belong in the URL).
        binary: send every input as binary data and ask for binary outputs (a BYTES input
            that is not UTF-8 goes binary either way).
    """
    inputs, blobs = _encode_tensors(request.inputs, {}, binary)
    doc: dict[str, Any] = {"inputs": inputs}
    if request.id is not None:
        doc["id"] = request.id
    parameters = dict(request.parameters)
    if binary:
        parameters.setdefault("binary_data_output", True)
    if parameters:
        doc["parameters"] = parameters
    if request.outputs:
        doc["outputs"] = [{"name": o.name, "parameters": o.parameters} if o.parameters
                          else {"name": o.name} for o in request.outputs]
    return doc, blobs


def _encode_tensors(tensors: list[Tensor], wanted: Mapping[str, bool], default: bool
                    ) -> tuple[list[dict[str, Any]], list[bytes]]:
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in tensors:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype,
                                 "shape": list(tensor.data.shape)}
        as_binary = wanted.get(tensor.name, default)
        data = None if as_binary else json_data(tensor.data, tensor.datatype)
        if data is None:
            blob = encode_raw(tensor.data, tensor.datatype)
            entry["parameters"] = {**tensor.parameters, "binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            if tensor.parameters:
                entry["parameters"] = tensor.parameters
            entry["data"] = data
        entries.append(entry)
    return entries, blobs


def json_data(array: np.ndarray[Any, Any], datatype: str) -> Any:
    """A flat view of ``array`` for a JSON ``data`` field (None for BYTES that are not UTF-8).

    Numeric arrays stay contiguous 1-D numpy arrays, which orjson writes natively; a
    standard-library encoder takes them with ``default=numpy.ndarray.tolist``.
    """
    if datatype == "BYTES":
        try:
            return [v.decode("utf-8") if isinstance(v, bytes) else str(v)
                    for v in array.reshape(-1)]
        except UnicodeDecodeError:
            return None
    return np.ascontiguousarray(array).reshape(-1)


def _shown(value: Any) -> str:
    """A client's value in a message: a string quoted and cut, anything else abbreviated."""
    return quote_name(value) if isinstance(value, str) else reprlib.repr(value)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
