"""The binary tensor data extension: raw tensor bytes after the JSON header, both ways.

A body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the raw data
of each tensor whose parameters carry ``binary_data_size``, in the order of the tensors in the
JSON. Raw data is little-endian, row-major, without padding; BOOL is one byte per element and
each BYTES element is a 4-byte little-endian length followed by its bytes.
Fixed-size tensors are read with ``numpy.frombuffer``, a view of the body without a copy.
"""

from __future__ import annotations

import struct
from math import prod
from typing import Any

import numpy as np

from ferry.errors import InputError, quote_name
from ferry.signature import DATATYPES, format_shape

__all__ = ["HEADER", "decode_tensor", "encode_tensor", "split_body"]

#: The header that gives the JSON part's length in a body with binary data.
HEADER = "inference-header-content-length"

_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str | None) -> tuple[bytes | memoryview, memoryview]:
    """Split a request body into its JSON part and its binary part.

    Args:
        body: the whole body.
        header_length: the ``Inference-Header-Content-Length`` header, or None.

    Raises:
        InputError: the header is not a number, or is larger than the body.
    """
    if header_length is None:
        return body, memoryview(b"")
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


def decode_tensor(raw: memoryview, name: str, datatype: str,
                  shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """Turn one tensor's raw bytes into an array of ``shape`` (a view for fixed-size types).

    Raises:
        InputError: the byte count does not fit the shape, or a BYTES element overruns.
    """
    count = prod(shape)
    if datatype == "BYTES":
        return _decode_bytes(raw, name, shape, count)
    dtype = DATATYPES[datatype].newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise InputError(
            f"input {quote_name(name)}: binary data of {len(raw)} bytes does not fit {datatype} "
            f"with shape {format_shape(shape)} ({count * dtype.itemsize} bytes)")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if datatype == "BOOL" and array.size and int(array.view(np.uint8).max()) > 1:
        raise InputError(
            f"input {quote_name(name)}: BOOL binary data holds bytes other than 0 and 1")
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def _decode_bytes(raw: memoryview, name: str, shape: tuple[int, ...],
                  count: int) -> np.ndarray[Any, Any]:
    # Each element needs at least its 4-byte length, so an absurd count is refused before
    # anything is allocated for it.
    if count * 4 > len(raw):
        raise InputError(
            f"input {quote_name(name)}: binary data of {len(raw)} bytes cannot hold {count} BYTES "
            f"elements (shape {format_shape(shape)})")
    out = np.empty(count, dtype=object)
    offset, end = 0, len(raw)
    for i in range(count):
        if offset + 4 > end:
            raise InputError(f"input {quote_name(name)}: BYTES element {i} has no length prefix")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise InputError(
                f"input {quote_name(name)}: BYTES element {i} of {length} bytes overruns the data")
        out[i] = bytes(raw[offset:offset + length])
        offset += length
    if offset != end:
        raise InputError(
            f"input {quote_name(name)}: {end - offset} bytes left after {count} BYTES elements "
            f"(shape {format_shape(shape)})")
    return out.reshape(shape)


def encode_tensor(array: np.ndarray[Any, Any], datatype: str) -> bytes:
    """Raw little-endian bytes of an array, BYTES elements length-prefixed."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in array.reshape(-1):
            item = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(_LENGTH.pack(len(item)))
            parts.append(item)
        return b"".join(parts)
    dtype = DATATYPES[datatype].newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()
