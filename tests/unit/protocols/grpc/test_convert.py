"""gRPC messages <-> ferry.inference types: every datatype both ways, and every bad request."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ferry.codec.raw import decode_raw, encode_raw
from ferry.errors import InputError
from ferry.inference import InferResponse, Tensor
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc.convert import (
    TYPED_FIELD,
    decode_parameters,
    decode_request,
    encode_parameters,
    encode_response,
)
from ferry.signature import DATATYPES

NUMERIC = [d for d in DATATYPES if d != "BYTES"]


def _sample(datatype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    dtype = DATATYPES[datatype]
    n = int(np.prod(shape))
    if datatype == "BOOL":
        return (np.arange(n) % 2 == 0).reshape(shape)
    if datatype == "BYTES":
        return np.array([f"é{i}".encode() * i for i in range(n)], dtype=object).reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)  # the extremes of the type, where wrapping would show
        edges = [int(info.min), int(info.min) + 1, 0, 1, int(info.max) - 1, int(info.max)]
        return np.array([edges[i % 6] for i in range(n)], dtype=dtype).reshape(shape)
    return (np.arange(n, dtype=dtype) * dtype.type(0.5) - 1).reshape(shape)


def _raw_request(*arrays: tuple[str, str, np.ndarray]) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m")
    for name, datatype, array in arrays:
        message.inputs.add(name=name, datatype=datatype, shape=array.shape)
        if datatype == "BYTES":
            message.raw_input_contents.append(encode_raw(array, "BYTES"))
        else:
            message.raw_input_contents.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
    return message


def _typed_request(name: str, datatype: str, shape, field: str | None = None, values=()):
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name=name, datatype=datatype, shape=shape)
    if field is not None:
        getattr(tensor.contents, field).extend(values)
    return message


# ------------------------------------------------------------------- good requests


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES"])
def test_raw_input_decodes_to_the_same_array(datatype: str) -> None:
    array = _sample(datatype)
    request = decode_request(_raw_request(("x", datatype, array)))
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, (2, 3))
    assert tensor.data.dtype == DATATYPES[datatype]
    np.testing.assert_array_equal(tensor.data, array)


def test_raw_numeric_input_is_a_view_of_the_request_bytes_not_a_copy() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    message = _raw_request(("x", "FP32", array))
    data = decode_request(message).inputs[0].data
    assert not data.flags.owndata and isinstance(data.base, bytes | memoryview | np.ndarray)
    assert data.base is not None


def test_raw_contents_are_little_endian() -> None:
    message = pb.ModelInferRequest(model_name="m", raw_input_contents=[struct.pack("<2i", 1, 256)])
    message.inputs.add(name="x", datatype="INT32", shape=[2])
    np.testing.assert_array_equal(decode_request(message).inputs[0].data, [1, 256])


@pytest.mark.parametrize("datatype", [d for d in TYPED_FIELD])
def test_typed_input_decodes_every_datatype_with_a_field(datatype: str) -> None:
    array = _sample(datatype)
    field = TYPED_FIELD[datatype]
    values = array.reshape(-1).tolist()
    tensor = decode_request(_typed_request("x", datatype, array.shape, field, values)).inputs[0]
    assert tensor.data.dtype == DATATYPES[datatype]
    assert tensor.data.shape == array.shape
    np.testing.assert_array_equal(tensor.data, array)


def test_request_fields_and_parameters_are_carried_over() -> None:
    message = _raw_request(("a", "FP32", np.zeros((1, 2), np.float32)))
    message.model_version = "3"
    message.id = "req-7"
    message.parameters["priority"].int64_param = 2
    message.parameters["flag"].bool_param = True
    message.parameters["note"].string_param = "hi"
    message.parameters["scale"].double_param = 0.5
    message.parameters["big"].uint64_param = 2**64 - 1
    out = message.outputs.add(name="y")
    out.parameters["classification"].int64_param = 3
    request = decode_request(message)
    assert (request.model_name, request.model_version, request.id) == ("m", "3", "req-7")
    assert request.parameters == {"priority": 2, "flag": True, "note": "hi", "scale": 0.5,
                                  "big": 2**64 - 1}
    assert [(o.name, o.parameters) for o in request.outputs or []] == [("y", {"classification": 3})]


def test_empty_version_and_id_mean_none_and_no_outputs_means_all() -> None:
    request = decode_request(_raw_request(("a", "FP32", np.zeros((1, 2), np.float32))))
    assert (request.model_version, request.id, request.outputs) == (None, None, None)


def test_zero_element_tensor_needs_no_contents() -> None:
    tensor = decode_request(_typed_request("x", "FP32", [0, 4])).inputs[0]
    assert tensor.data.shape == (0, 4) and tensor.data.dtype == np.float32


# -------------------------------------------------------------------- bad requests


def _error(message: pb.ModelInferRequest) -> str:
    with pytest.raises(InputError) as info:
        decode_request(message)
    return str(info.value)


def test_raw_length_not_matching_the_shape_is_refused_with_both_numbers() -> None:
    message = _raw_request(("x", "FP32", np.zeros((2, 3), np.float32)))
    message.inputs[0].shape[:] = [2, 4]
    text = _error(message)
    assert "'x'" in text and "24 bytes" in text and "32" in text and "[2, 4]" in text


def test_typed_length_not_matching_the_shape_is_refused() -> None:
    text = _error(_typed_request("x", "FP32", [2, 2], "fp32_contents", [1.0, 2.0, 3.0]))
    assert "'x'" in text and "3 elements" in text and "needs 4" in text


def test_missing_data_is_named() -> None:
    assert "has no data" in _error(_typed_request("x", "FP32", [1, 2]))


def test_unknown_datatype_lists_the_valid_ones() -> None:
    text = _error(_typed_request("x", "FLOAT", [1], "fp32_contents", [1.0]))
    assert "unknown datatype 'FLOAT'" in text and "FP32" in text


def test_bf16_is_refused_as_unknown() -> None:
    message = _raw_request(("x", "FP16", np.zeros(2, np.float16)))
    message.inputs[0].datatype = "BF16"
    assert "unknown datatype 'BF16'" in _error(message)


@pytest.mark.parametrize("shape", [[-1, 3], [2, -5]], ids=["batch", "inner"])
def test_negative_dimensions_are_refused(shape) -> None:
    text = _error(_typed_request("x", "FP32", shape, "fp32_contents", [1.0] * 3))
    assert "negative dimension" in text


@pytest.mark.parametrize("datatype", ["FP32", "BYTES", "BOOL"])
def test_absurd_shapes_are_refused_without_allocating(datatype: str) -> None:
    message = _raw_request(("x", datatype, _sample(datatype, (2,))))
    message.inputs[0].shape[:] = [2**40, 2**40]
    assert "'x'" in _error(message)


def test_absurd_shape_with_typed_contents_is_refused() -> None:
    text = _error(_typed_request("x", "BYTES", [2**62, 2], "bytes_contents", [b"a"]))
    assert f"dimension {2**62} of shape [{2**62}, 2] is above the maximum" in text
    text = _error(_typed_request("x", "BYTES", [2**20, 2], "bytes_contents", [b"a"]))
    assert "1 elements" in text


def test_too_many_dimensions_are_refused() -> None:
    text = _error(_typed_request("x", "FP32", [1] * 65, "fp32_contents", [1.0]))
    assert "65 dimensions" in text


def test_raw_and_typed_contents_together_are_refused() -> None:
    message = _raw_request(("x", "FP32", np.zeros(2, np.float32)))
    message.inputs[0].contents.fp32_contents.extend([1.0, 2.0])
    assert "one or the other" in _error(message)


def test_raw_contents_count_must_match_the_inputs() -> None:
    message = _raw_request(("x", "FP32", np.zeros(2, np.float32)),
                           ("y", "FP32", np.zeros(2, np.float32)))
    del message.raw_input_contents[1]
    text = _error(message)
    assert "1 entries" in text and "2 inputs" in text


def test_bytes_where_numbers_are_expected_names_the_field() -> None:
    text = _error(_typed_request("x", "FP32", [2], "bytes_contents", [b"a", b"b"]))
    assert "contents.fp32_contents" in text and "contents.bytes_contents" in text


def test_wrong_typed_field_for_the_datatype_is_refused() -> None:
    text = _error(_typed_request("x", "INT64", [2], "int_contents", [1, 2]))
    assert "contents.int64_contents" in text


def test_fp16_has_no_typed_field() -> None:
    text = _error(_typed_request("x", "FP16", [1], "fp32_contents", [1.0]))
    assert "raw_input_contents" in text


@pytest.mark.parametrize(("datatype", "value"), [("INT8", 128), ("INT16", -40000),
                                                 ("UINT8", 256), ("UINT16", 70000)])
def test_typed_values_out_of_range_are_refused_not_wrapped(datatype: str, value: int) -> None:
    text = _error(_typed_request("x", datatype, [1], TYPED_FIELD[datatype], [value]))
    assert f"value {value} is out of range for {datatype}" in text


def test_raw_bool_must_be_zero_or_one() -> None:
    message = pb.ModelInferRequest(model_name="m", raw_input_contents=[b"\x00\x02"])
    message.inputs.add(name="x", datatype="BOOL", shape=[2])
    assert "0 or 1" in _error(message)


def test_the_same_input_twice_is_refused() -> None:
    message = _raw_request(("x", "FP32", np.zeros(1, np.float32)),
                           ("x", "FP32", np.zeros(1, np.float32)))
    assert "more than once" in _error(message)


def test_a_model_name_is_required() -> None:
    message = _raw_request(("x", "FP32", np.zeros(1, np.float32)))
    message.model_name = ""
    assert "model_name is empty" in _error(message)


# ----------------------------------------------------------------------- responses


def _response(*tensors: Tensor, **kw) -> InferResponse:
    return InferResponse(model_name="m", model_version="2", outputs=list(tensors), **kw)


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES"])
def test_raw_output_roundtrips_through_the_wire_format(datatype: str) -> None:
    array = _sample(datatype)
    message = encode_response(_response(Tensor("y", datatype, array.shape, array)))
    wire = pb.ModelInferResponse.FromString(message.SerializeToString())
    (out,) = wire.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("y", datatype, [2, 3])
    assert not out.HasField("contents")
    raw = wire.raw_output_contents[0]
    if datatype == "BYTES":
        got = decode_raw(raw, "BYTES", (2, 3), "y")
    else:
        got = np.frombuffer(raw, DATATYPES[datatype].newbyteorder("<")).reshape(2, 3)
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("datatype", list(TYPED_FIELD))
def test_typed_output_fills_the_datatypes_field(datatype: str) -> None:
    array = _sample(datatype)
    message = encode_response(_response(Tensor("y", datatype, array.shape, array)), raw=False)
    assert not message.raw_output_contents
    values = list(getattr(message.outputs[0].contents, TYPED_FIELD[datatype]))
    np.testing.assert_array_equal(np.array(values, dtype=DATATYPES[datatype]), array.reshape(-1))


def test_typed_response_with_an_fp16_output_is_all_raw() -> None:
    a = np.ones((1, 2), np.float32)
    h = np.ones((1, 2), np.float16)
    message = encode_response(_response(Tensor("a", "FP32", a.shape, a),
                                        Tensor("h", "FP16", h.shape, h)), raw=False)
    assert len(message.raw_output_contents) == 2
    assert not any(o.HasField("contents") for o in message.outputs)


def test_response_carries_name_version_id_and_parameters() -> None:
    a = np.ones((1, 2), np.float32)
    message = encode_response(_response(Tensor("a", "FP32", a.shape, a, {"p": 1}),
                                        id="req-1", parameters={"served_by": "2"}))
    assert (message.model_name, message.model_version, message.id) == ("m", "2", "req-1")
    assert decode_parameters(message.parameters) == {"served_by": "2"}
    assert decode_parameters(message.outputs[0].parameters) == {"p": 1}


def test_non_contiguous_outputs_are_written_row_major() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3).T
    message = encode_response(_response(Tensor("y", "FP32", array.shape, array)))
    got = np.frombuffer(message.raw_output_contents[0], np.float32).reshape(3, 2)
    np.testing.assert_array_equal(got, array)


def test_parameters_keep_their_types() -> None:
    message = pb.ModelInferResponse()
    values = {"b": True, "i": -3, "u": 2**64 - 1, "f": 0.25, "s": "x", "huge": 2**70,
              "np": np.int32(4), "other": [1]}
    encode_parameters(values, message.parameters)
    assert decode_parameters(message.parameters) == {
        "b": True, "i": -3, "u": 2**64 - 1, "f": 0.25, "s": "x", "huge": str(2**70),
        "np": 4, "other": "[1]",
    }


# --------------------------------------------------------------- client direction


def test_client_request_roundtrips_through_the_server_decoder() -> None:
    from ferry.inference import InferRequest, RequestedOutput
    from ferry.protocols.grpc.convert import encode_request

    arrays = {d: _sample(d) for d in [*NUMERIC, "BYTES"]}
    request = InferRequest(
        model_name="m", model_version="1", id="r",
        inputs=[Tensor(d.lower(), d, a.shape, a) for d, a in arrays.items()],
        outputs=[RequestedOutput("y", {"binary_data": True})], parameters={"p": 1},
    )
    wire = pb.ModelInferRequest.FromString(encode_request(request).SerializeToString())
    back = decode_request(wire)
    assert (back.model_name, back.model_version, back.id, back.parameters) == ("m", "1", "r",
                                                                             {"p": 1})
    assert [(o.name, o.parameters) for o in back.outputs or []] == [("y", {"binary_data": True})]
    for tensor in back.inputs:
        np.testing.assert_array_equal(tensor.data, arrays[tensor.datatype])


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_client_decodes_raw_and_typed_responses(raw: bool) -> None:
    from ferry.protocols.grpc.convert import decode_response

    arrays = {d: _sample(d) for d in TYPED_FIELD}
    message = encode_response(_response(*[Tensor(d, d, a.shape, a) for d, a in arrays.items()],
                                        id="q"), raw=raw)
    back = decode_response(pb.ModelInferResponse.FromString(message.SerializeToString()))
    assert (back.model_name, back.model_version, back.id) == ("m", "2", "q")
    for tensor in back.outputs:
        np.testing.assert_array_equal(tensor.data, arrays[tensor.name])


def test_malformed_responses_name_the_output() -> None:
    from ferry.protocols.grpc.convert import decode_response

    message = pb.ModelInferResponse(model_name="m", raw_output_contents=[b"\x00" * 3])
    message.outputs.add(name="y", datatype="FP32", shape=[1])
    with pytest.raises(InputError, match="output 'y': 3 bytes of raw contents do not fit FP32"):
        decode_response(message)


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_a_zero_element_tensor_with_a_huge_dimension_is_refused(raw: bool) -> None:
    """Issue 13: shape [0, 2**62] made numpy's reshape raise "array is too big" (INTERNAL)."""
    if raw:
        message = _raw_request(("x", "FP32", np.zeros((0, 4), np.float32)))
        message.inputs[0].shape[:] = [0, 2**62]
    else:
        message = _typed_request("x", "FP32", [0, 2**62], "fp32_contents", [])
    text = _error(message)
    assert f"input 'x': dimension {2**62} of shape [0, {2**62}] is above the maximum" in text


def test_a_long_input_name_is_cut_in_the_message() -> None:
    """Issue 13: a 100,000-character name must not make the status details overflow."""
    text = _error(_typed_request("n" * 100_000, "FLOAT", [1], "fp32_contents", [1.0]))
    assert "more characters)" in text and len(text) < 400
