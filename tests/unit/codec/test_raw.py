"""ferry.codec.raw: every datatype to raw bytes and back, and every malformed length refused."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ferry.codec.raw import decode_raw, encode_raw
from ferry.errors import InputError
from ferry.signature import DATATYPES

FIXED = [d for d in DATATYPES if d != "BYTES"]


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_every_datatype_round_trips_with_its_dtype_and_shape(datatype: str, sample) -> None:
    array = sample(datatype)
    back = decode_raw(encode_raw(array, datatype), datatype, (2, 3), "x")
    assert back.shape == (2, 3) and back.dtype == DATATYPES[datatype]
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("datatype", FIXED)
def test_fixed_size_data_is_little_endian_and_unpadded(datatype: str, sample) -> None:
    array = sample(datatype)
    raw = encode_raw(array, datatype)
    assert raw == array.astype(DATATYPES[datatype].newbyteorder("<")).tobytes()
    assert len(raw) == array.size * DATATYPES[datatype].itemsize


def test_fixed_size_decoding_is_a_view_of_the_buffer() -> None:
    body = bytearray(np.arange(4, dtype=np.float32).tobytes())
    array = decode_raw(memoryview(body), "FP32", (2, 2), "x")
    body[0:4] = np.float32(9).tobytes()
    assert array[0, 0] == 9  # no copy was made


def test_non_contiguous_and_big_endian_arrays_are_written_little_endian() -> None:
    array = np.arange(6, dtype=">i4").reshape(2, 3).T
    raw = encode_raw(array, "INT32")
    assert raw == np.ascontiguousarray(array, dtype="<i4").tobytes()
    np.testing.assert_array_equal(decode_raw(raw, "INT32", (3, 2), "x"), array)


def test_bytes_elements_are_length_prefixed_and_str_written_as_utf8() -> None:
    array = np.array([b"ab", b"", "ü"], dtype=object)
    raw = encode_raw(array, "BYTES")
    assert raw == (struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)
                   + struct.pack("<I", 2) + "ü".encode())
    assert decode_raw(raw, "BYTES", (3,), "s").tolist() == [b"ab", b"", "ü".encode()]


def test_bytes_elements_decode_to_bytes_from_a_memoryview() -> None:
    raw = encode_raw(np.array([b"\x00\xff", b"abc" * 100], dtype=object), "BYTES")
    back = decode_raw(memoryview(raw), "BYTES", (2, 1), "s")
    assert back.shape == (2, 1) and all(type(v) is bytes for v in back.reshape(-1))
    assert back[1, 0] == b"abc" * 100


def test_empty_tensors_round_trip() -> None:
    assert decode_raw(b"", "FP32", (0, 4), "x").shape == (0, 4)
    assert decode_raw(encode_raw(np.empty(0, dtype=object), "BYTES"), "BYTES", (0,), "s").size == 0


@pytest.mark.parametrize(("datatype", "shape", "data", "phrase"), [
    ("FP32", (2,), b"\0" * 4,
     "input 'x': 4 bytes of binary data do not fit FP32 with shape [2], which needs 8 "
     "(2 elements of 4 bytes)"),
    ("FP16", (3,), b"\0" * 4, "which needs 6 (3 elements of 2 bytes)"),
    ("INT64", (1,), b"\0" * 9, "9 bytes of binary data do not fit INT64"),
    ("BOOL", (2,), b"\x00\x02", "input 'x': BOOL binary data may hold only bytes of 0 or 1"),
    ("BYTES", (2**30,), b"\0" * 4, "4 bytes of binary data cannot hold 1073741824 BYTES elements"),
    ("BYTES", (2,), struct.pack("<I", 3) + b"abc\x01",
     "BYTES element 1 has no length prefix; the binary data end inside it"),
    ("BYTES", (1,), struct.pack("<I", 5) + b"abc",
     "BYTES element 0 of 5 bytes overruns the binary data (3 bytes remain)"),
    ("BYTES", (2,), struct.pack("<I", 1) + b"a" + struct.pack("<I", 1),
     "BYTES element 1 of 1 bytes overruns the binary data (0 bytes remain)"),
    ("BYTES", (1,), struct.pack("<I", 1) + b"ab",
     "1 bytes of binary data left over after 1 BYTES elements (shape [1])"),
], ids=["short", "fp16-short", "long", "bool", "absurd-count", "cut-length", "overrun",
        "truncated-element", "left-over"])
def test_malformed_data_is_an_input_error_naming_the_tensor(
        datatype: str, shape: tuple[int, ...], data: bytes, phrase: str) -> None:
    with pytest.raises(InputError) as caught:
        decode_raw(data, datatype, shape, "x")
    assert phrase in str(caught.value)


def test_messages_name_the_role_and_the_doors_own_word_for_the_bytes() -> None:
    with pytest.raises(InputError, match="^output 'y': 3 bytes of raw contents do not fit"):
        decode_raw(b"\0" * 3, "FP32", (1,), "y", role="output", source="raw contents")
