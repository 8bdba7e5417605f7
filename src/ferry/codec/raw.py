"""One tensor <-> raw bytes: the V2 binary extension's and gRPC raw contents' layout.

Raw data is little-endian, row-major and unpadded; BOOL is one byte per element (0 or 1) and
each BYTES element is a 4-byte little-endian length followed by its bytes. The REST binary
extension, gRPC ``raw_input_contents`` / ``raw_output_contents`` and both clients read and
write it through these two functions, so the three used to be one.

Fixed-size tensors are read with :func:`numpy.frombuffer`, a view of the caller's buffer
without a copy, and written with one ``tobytes``. Nothing is allocated for a shape before
the data has been found to fit it, so an absurd shape is an :class:`InputError`, not a
``MemoryError``.
"""

from __future__ import annotations

import struct
from math import prod
from typing import Any

import numpy as np

from ferry.errors import InputError, quote_name
from ferry.signature import DATATYPES, format_shape

__all__ = ["LENGTH", "decode_raw", "encode_raw"]

#: The length prefix of each BYTES element.
LENGTH = struct.Struct("<I")

# The wire dtype of each fixed-size datatype, built once: on little-endian machines (all that
# ferry runs on in practice) these equal the native dtypes and cost nothing to read.
_WIRE: dict[str, np.dtype[Any]] = {
    name: dtype.newbyteorder("<") for name, dtype in DATATYPES.items() if name != "BYTES"
}


def decode_raw(data: bytes | memoryview, datatype: str, shape: tuple[int, ...], name: str, *,
               role: str = "input", source: str = "binary data") -> np.ndarray[Any, Any]:
    """Turn one tensor's raw bytes into an array of ``shape`` (a view for fixed-size types).

    Args:
        data: the tensor's bytes, and nothing else.
        datatype: a V2 datatype name the caller has already checked.
        shape: the tensor's shape, within :func:`ferry.signature.check_shape`'s bounds.
        name: the tensor's name, for messages.
        role: ``"input"`` or ``"output"``, for messages.
        source: what the door calls the bytes (``"binary data"``, ``"raw contents"``), so a
            message points at the field the client filled.

    Raises:
        InputError: the byte count does not fit the shape, BOOL bytes other than 0 and 1,
            or BYTES elements that end early, overrun or leave bytes over.
    """
    if datatype == "BYTES":
        return _decode_bytes(data, shape, name, role, source)
    wire = _WIRE[datatype]
    count = prod(shape)
    if len(data) != count * wire.itemsize:
        raise InputError(
            f"{role} {quote_name(name)}: {len(data)} bytes of {source} do not fit {datatype} "
            f"with shape {format_shape(shape)}, which needs {count * wire.itemsize} "
            f"({count} elements of {wire.itemsize} bytes)")
    array = np.frombuffer(data, dtype=wire).reshape(shape)
    if datatype == "BOOL" and count and int(array.view(np.uint8).max()) > 1:
        raise InputError(
            f"{role} {quote_name(name)}: BOOL {source} may hold only bytes of 0 or 1")
    return array if wire.isnative else array.astype(wire.newbyteorder("="))


def _decode_bytes(data: bytes | memoryview, shape: tuple[int, ...], name: str, role: str,
                  source: str) -> np.ndarray[Any, Any]:
    count = prod(shape)
    end = len(data)
    # Each element needs at least its length prefix, so an absurd count is refused before
    # anything is allocated for it.
    if count * LENGTH.size > end:
        raise InputError(
            f"{role} {quote_name(name)}: {end} bytes of {source} cannot hold {count} BYTES "
            f"elements (shape {format_shape(shape)}; each needs a {LENGTH.size}-byte length "
            "prefix)")
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + LENGTH.size > end:
            raise InputError(
                f"{role} {quote_name(name)}: BYTES element {i} has no length prefix; the "
                f"{source} end inside it")
        (length,) = LENGTH.unpack_from(data, offset)
        offset += LENGTH.size
        if offset + length > end:
            raise InputError(
                f"{role} {quote_name(name)}: BYTES element {i} of {length} bytes overruns the "
                f"{source} ({end - offset} bytes remain)")
        out[i] = bytes(data[offset:offset + length])
        offset += length
    if offset != end:
        raise InputError(
            f"{role} {quote_name(name)}: {end - offset} bytes of {source} left over after "
            f"{count} BYTES elements (shape {format_shape(shape)}); the shape and the data "
            "disagree")
    return out.reshape(shape)


def encode_raw(array: np.ndarray[Any, Any], datatype: str) -> bytes:
    """Raw little-endian bytes of an array; BYTES elements length-prefixed.

    ``str`` elements of a BYTES array (what ONNX Runtime returns for string outputs) are
    written as UTF-8. For the C-contiguous native arrays runtimes return,
    ``ascontiguousarray`` is a no-op and ``tobytes`` the one copy the message needs anyway.
    """
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in array.reshape(-1):
            item = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(LENGTH.pack(len(item)))
            parts.append(item)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=_WIRE[datatype]).tobytes()
