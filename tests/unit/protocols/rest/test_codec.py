"""V2 JSON/binary request decoding (ferry.codec) and the REST response encoding (orjson)."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from ferry.codec.raw import decode_raw, encode_raw
from ferry.codec.rows import json_value
from ferry.codec.v2json import decode_request, split_body
from ferry.errors import InputError
from ferry.inference import InferRequest, InferResponse, RequestedOutput, Tensor
from ferry.protocols.rest.codec import encode_response

EMPTY = memoryview(b"")


def _one(datatype, shape, data):
    doc = {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
    return decode_request(doc, EMPTY, "m", None).inputs[0].data


# ------------------------------------------------------------------ JSON tensors

@pytest.mark.parametrize(("datatype", "data", "dtype"), [
    ("FP32", [1.5, 2, 3, 4], np.float32),
    ("FP64", [1.5, 2, 3, 4], np.float64),
    ("FP16", [1.5, 2, 3, 4], np.float16),
    ("INT8", [-1, 2, 3, 4], np.int8),
    ("INT16", [-1, 2, 3, 4], np.int16),
    ("INT32", [-1, 2, 3, 4], np.int32),
    ("INT64", [-1, 2, 3, 4], np.int64),
    ("UINT8", [1, 2, 3, 255], np.uint8),
    ("UINT16", [1, 2, 3, 4], np.uint16),
    ("UINT32", [1, 2, 3, 4], np.uint32),
    ("UINT64", [1, 2, 3, 2**64 - 1], np.uint64),
    ("BOOL", [True, False, True, True], np.bool_),
], ids=lambda v: v if isinstance(v, str) else None)
def test_every_numeric_datatype_decodes_flat_to_its_dtype_and_shape(datatype, data, dtype):
    array = _one(datatype, [2, 2], data)
    assert array.dtype == dtype and array.shape == (2, 2)
    assert array.reshape(-1).tolist() == [dtype(v).item() for v in data]


def test_nested_data_is_accepted_like_flat_data():
    nested = _one("FP32", [2, 3], [[1, 2, 3], [4, 5, 6]])
    flat = _one("FP32", [2, 3], [1, 2, 3, 4, 5, 6])
    assert np.array_equal(nested, flat) and nested.shape == (2, 3)


def test_bytes_tensors_decode_strings_to_utf8_bytes():
    array = _one("BYTES", [2], ["héllo", "w"])
    assert array.dtype == object and array.tolist() == ["héllo".encode(), b"w"]


def test_request_fields_are_kept():
    doc = {"id": "42", "parameters": {"binary_data_output": True, "p": 1},
           "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1],
                       "parameters": {"k": "v"}}],
           "outputs": [{"name": "y", "parameters": {"binary_data": False}}]}
    request = decode_request(doc, EMPTY, "m", "3")
    assert (request.model_name, request.model_version, request.id) == ("m", "3", "42")
    assert request.parameters == {"binary_data_output": True, "p": 1}
    assert request.inputs[0].parameters == {"k": "v"}
    assert request.outputs == [RequestedOutput("y", {"binary_data": False})]


@pytest.mark.parametrize(("doc", "phrase"), [
    ([1, 2], "must be a JSON object, got a list"),
    ({}, "needs 'inputs'"),
    ({"inputs": []}, "needs 'inputs'"),
    ({"inputs": [5]}, "inputs[0] must be a JSON object"),
    ({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}, "inputs[0] needs a 'name'"),
    ({"inputs": [{"name": "x", "datatype": "FP8", "shape": [1], "data": [1]}]},
     "input 'x': unknown datatype 'FP8'"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2], "data": [1, 2]}]},
     "input 'x': 'shape' must be a list of non-negative integers, got [-1, 2]"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2**64], "data": [1]}]},
     f"input 'x': dimension {2**64} of shape [{2**64}] is above the maximum of 2147483647"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [0, 2**62], "data": []}]},
     f"dimension {2**62} of shape [0, {2**62}] is above the maximum of 2147483647"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [0, 2**30, 2**30], "data": []}]},
     "describes 1152921504606846976 elements (a dimension of 0 counted as 1)"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [0] * 65, "data": []}]},
     "input 'x': shape has 65 dimensions; at most 64 are possible"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": "2", "data": [1]}]},
     "'shape' must be a list"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1.5], "data": [1]}]},
     "'shape' must be a list"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5]}]},
     "input 'x': shape [2, 3] needs 6 values, 'data' has 5"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [10**9, 10**9], "data": [1]}]},
     "shape [1000000000, 1000000000] describes 1000000000000000000 elements"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": ["a", "b"]}]},
     "input 'x': expected FP32 values, got strings"),
    ({"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [1.5, 2]}]},
     "input 'x': expected INT32 values, got floating-point numbers"),
    ({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [256]}]},
     "value 256 is out of range for UINT8"),
    ({"inputs": [{"name": "x", "datatype": "FP16", "shape": [1], "data": [1e6]}]},
     "input 'x': a value is out of range for FP16 (largest magnitude 65504)"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1e39]}]},
     "a value is out of range for FP32"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3]]}]},
     "not a rectangular array"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": {"a": 1}}]},
     "'data' must be a list of values, got an object"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "input 'x': needs 'data'"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}] * 2},
     "input 'x' appears more than once in the request"),
    ({"id": 7, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]},
     "'id' must be a string"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": {}},
     "'outputs' must be a list"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
      "parameters": {"a": [1]}}, "parameter 'a' must be a string, number or boolean"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1],
                  "parameters": {"binary_data_size": 4}}]}, "beyond the 0 bytes of binary data"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_requests_are_input_errors_naming_the_field(doc, phrase):
    with pytest.raises(InputError) as caught:
        decode_request(doc, EMPTY, "m", None)
    assert phrase in str(caught.value)


# ------------------------------------------------------------------ binary data

def _binary_request(inputs, blobs, header=None):
    doc = orjson.dumps({"inputs": inputs})
    body = doc + b"".join(blobs)
    head, binary = split_body(body, str(len(doc)) if header is None else header)
    return decode_request(orjson.loads(head), binary, "m", None)


def test_binary_inputs_decode_without_copying_and_in_order():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([True, False, True])
    request = _binary_request(
        [{"name": "a", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}},
         {"name": "b", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}}],
        [a.tobytes(), b.tobytes()])
    got_a, got_b = (t.data for t in request.inputs)
    assert np.array_equal(got_a, a) and np.array_equal(got_b, b)
    assert not got_a.flags.owndata  # a view of the body


def test_binary_bytes_elements_are_length_prefixed():
    raw = encode_raw(np.array([b"ab", b"", "ü".encode()], dtype=object), "BYTES")
    assert raw == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0) + struct.pack("<I", 2) + "ü".encode()
    back = decode_raw(memoryview(raw), "BYTES", (3,), "s")
    assert back.tolist() == [b"ab", b"", "ü".encode()]


def test_binary_fp16_round_trips():
    x = np.array([[0.5, -2.0]], dtype=np.float16)
    back = decode_raw(memoryview(encode_raw(x, "FP16")), "FP16", (1, 2), "x")
    assert back.dtype == np.float16 and np.array_equal(back, x)


@pytest.mark.parametrize(("header", "phrase"), [
    ("9999", "Inference-Header-Content-Length 9999 is beyond the body of"),
    ("abc", "is not a number of bytes"),
    ("-5", "is not a number of bytes"),
    ("²", "is not a number of bytes"),
    ("\uff11\uff12", "is not a number of bytes"),  # fullwidth 12
    ("9" * 5000, "is not a number of bytes"),
])
def test_bad_header_lengths_are_refused(header, phrase):
    with pytest.raises(InputError, match=phrase):
        split_body(b'{"inputs": []}', header)


@pytest.mark.parametrize(("inputs", "blobs", "phrase"), [
    ([{"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 4}}],
     [b"\0" * 4], "4 bytes of binary data do not fit FP32 with shape [2], which needs 8"),
    ([{"name": "a", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}],
     [b"\0" * 8], "4 bytes after the last tensor"),
    ([{"name": "a", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 40}}],
     [b"\0" * 4], "binary_data_size 40 at offset 0 is beyond the 4 bytes"),
    ([{"name": "a", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": -4}}],
     [b"\0" * 4], "binary_data_size must be a non-negative integer"),
    ([{"name": "a", "datatype": "FP32", "shape": [1], "data": [1],
       "parameters": {"binary_data_size": 4}}], [b"\0" * 4], "both 'data' and binary_data_size"),
    ([{"name": "s", "datatype": "BYTES", "shape": [2**30], "parameters": {"binary_data_size": 4}}],
     [b"\0" * 4], "cannot hold 1073741824 BYTES elements"),
    ([{"name": "s", "datatype": "BYTES", "shape": [10**12], "parameters": {"binary_data_size": 4}}],
     [b"\0" * 4], "dimension 1000000000000 of shape [1000000000000] is above the maximum"),
    ([{"name": "a", "datatype": "FP32", "shape": [0, 2**62], "parameters": {"binary_data_size": 0}}],
     [], f"dimension {2**62} of shape [0, {2**62}] is above the maximum of 2147483647"),
    ([{"name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}],
     [struct.pack("<I", 9) + b"ab"], "BYTES element 0 of 9 bytes overruns the binary data"),
    ([{"name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 7}}],
     [struct.pack("<I", 2) + b"abc"], "1 bytes of binary data left over after 1 BYTES elements"),
    ([{"name": "b", "datatype": "BOOL", "shape": [1], "parameters": {"binary_data_size": 1}}],
     [b"\x07"], "BOOL binary data may hold only bytes of 0 or 1"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_binary_tensors_are_input_errors(inputs, blobs, phrase):
    with pytest.raises(InputError) as caught:
        _binary_request(inputs, blobs)
    assert phrase in str(caught.value)


# ------------------------------------------------------------------ responses

def test_json_response_echoes_id_and_flattens_data():
    y = Tensor("y", "FP32", (2, 2), np.array([[1, 2], [3, 4]], dtype=np.float32))
    request = InferRequest("m", [], id="abc")
    body, header = encode_response(InferResponse("m", "2", [y]), request)
    doc = orjson.loads(body)
    assert header is None
    assert doc == {"model_name": "m", "model_version": "2", "id": "abc", "outputs": [
        {"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]}]}


def test_binary_outputs_follow_the_json_header_in_order():
    y = Tensor("y", "FP32", (2,), np.array([1, 2], dtype=np.float32))
    s = Tensor("s", "BYTES", (1,), np.array([b"hi"], dtype=object))
    z = Tensor("z", "INT64", (1,), np.array([7]))
    # Default binary for every output, z asks for JSON explicitly.
    request = InferRequest("m", [], parameters={"binary_data_output": True},
                           outputs=[RequestedOutput("y"), RequestedOutput("s"),
                                    RequestedOutput("z", {"binary_data": False})])
    body, header = encode_response(InferResponse("m", "1", [y, s, z]), request)
    doc = orjson.loads(body[:header])
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert outputs["y"]["parameters"] == {"binary_data_size": 8} and "data" not in outputs["y"]
    assert outputs["s"]["parameters"] == {"binary_data_size": 6}
    assert outputs["z"]["data"] == [7]
    assert body[header:] == np.array([1, 2], dtype="<f4").tobytes() + struct.pack("<I", 2) + b"hi"


def test_per_output_binary_flag_without_a_default():
    y = Tensor("y", "FP32", (1,), np.array([1], dtype=np.float32))
    request = InferRequest("m", [], outputs=[RequestedOutput("y", {"binary_data": True})])
    body, header = encode_response(InferResponse("m", "1", [y]), request)
    assert header is not None and body[header:] == np.float32(1).tobytes()


def test_bytes_outputs_that_are_not_utf8_go_binary_losslessly():
    s = Tensor("s", "BYTES", (1,), np.array([b"\xff\x00"], dtype=object))
    body, header = encode_response(InferResponse("m", "1", [s]), InferRequest("m", []))
    assert header is not None
    assert decode_raw(memoryview(body)[header:], "BYTES", (1,), "s").tolist() == [b"\xff\x00"]


def test_json_value_keeps_the_natural_shape():
    assert orjson.dumps(json_value(np.array([[1, 2]], dtype=np.int8)),
                        option=orjson.OPT_SERIALIZE_NUMPY) == b"[[1,2]]"
    assert json_value(np.array([[b"a"], [b"b"]], dtype=object)) == [["a"], ["b"]]
    assert json_value(np.float32(2.5)) == 2.5
