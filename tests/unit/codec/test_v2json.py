"""ferry.codec.v2json both ways: the client's request is the server's, the server's response
the client's, for every datatype, in JSON and with the binary extension."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ferry.codec.v2json import (
    decode_request,
    decode_response,
    request_document,
    response_document,
    split_body,
)
from ferry.errors import InputError
from ferry.inference import InferRequest, InferResponse, RequestedOutput, Tensor
from ferry.signature import DATATYPES


def _wire(doc: dict, blobs: list[bytes]) -> tuple[bytes, str | None]:
    """Serialise as the REST client does (standard library json, numpy arrays as lists)."""
    header = json.dumps(doc, default=np.ndarray.tolist).encode()
    return b"".join((header, *blobs)), str(len(header)) if blobs else None


def _parse(body: bytes, header: str | None):
    head, binary = split_body(body, header)
    return json.loads(bytes(head)), binary


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_a_client_request_decodes_on_the_server_unchanged(datatype: str, binary: bool,
                                                          sample) -> None:
    array = sample(datatype)
    sent = InferRequest("m", [Tensor("x", datatype, array.shape, array)], id="r1",
                        outputs=[RequestedOutput("y")], parameters={"p": 1})
    doc, blobs = request_document(sent, binary=binary)
    assert bool(blobs) == binary
    got = decode_request(*_parse(*_wire(doc, blobs)), "m", "3")
    (tensor,) = got.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, (2, 3))
    assert tensor.data.dtype == DATATYPES[datatype]
    np.testing.assert_array_equal(tensor.data, array)
    assert (got.model_name, got.model_version, got.id) == ("m", "3", "r1")
    assert [o.name for o in got.outputs or []] == ["y"]
    assert got.parameters["p"] == 1
    assert got.parameters.get("binary_data_output") is (True if binary else None)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_a_server_response_decodes_on_the_client_unchanged(datatype: str, binary: bool,
                                                           sample) -> None:
    array = sample(datatype)
    request = InferRequest("m", [], id="r2", parameters={"binary_data_output": binary})
    answer = InferResponse("m", "4", [Tensor("y", datatype, array.shape, array)])
    doc, blobs = response_document(answer, request)
    got = decode_response(*_parse(*_wire(doc, blobs)))
    (tensor,) = got.outputs
    assert tensor.data.dtype == DATATYPES[datatype] and tensor.data.shape == (2, 3)
    np.testing.assert_array_equal(tensor.data, array)
    assert (got.model_name, got.model_version, got.id) == ("m", "4", "r2")


def test_nan_outputs_written_as_null_read_back_as_nan_on_the_client_only() -> None:
    doc = {"model_name": "m", "model_version": "1",
           "outputs": [{"name": "y", "datatype": "FP32", "shape": [2], "data": [None, 1.0]}]}
    got = decode_response(doc, memoryview(b"")).outputs[0].data
    assert np.isnan(got[0]) and got[1] == 1.0
    with pytest.raises(InputError, match="input 'y': expected FP32 values"):
        decode_request({"inputs": doc["outputs"]}, memoryview(b""), "m", None)


def test_bytes_that_are_not_utf8_go_binary_even_in_a_json_request() -> None:
    array = np.array([b"\xff\x00"], dtype=object)
    doc, blobs = request_document(InferRequest("m", [Tensor("s", "BYTES", (1,), array)]),
                                  binary=False)
    assert blobs and "data" not in doc["inputs"][0]
    got = decode_request(*_parse(*_wire(doc, blobs)), "m", None)
    assert got.inputs[0].data.tolist() == [b"\xff\x00"]


@pytest.mark.parametrize(("data", "shape", "phrase"), [
    ([1, 2, 3], [2, 2], "input 'x': shape [2, 2] needs 4 values, 'data' has 3"),
    ([[1, 2], [3, 4]], [3], "input 'x': shape [3] needs 3 values, 'data' has 4"),
    ([], [1], "input 'x': shape [1] needs 1 values, 'data' has 0"),
], ids=["too-few", "too-many", "empty"])
def test_a_shape_that_does_not_match_the_element_count_is_refused(data, shape, phrase) -> None:
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": shape, "data": data}]}
    with pytest.raises(InputError) as caught:
        decode_request(doc, memoryview(b""), "m", None)
    assert phrase in str(caught.value)


def test_binary_sizes_that_do_not_match_the_shape_are_refused() -> None:
    doc = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2],
                       "parameters": {"binary_data_size": 12}}]}
    with pytest.raises(InputError,
                       match=r"input 'x': 12 bytes of binary data do not fit FP64 with shape \[2\]"):
        decode_request(doc, memoryview(b"\0" * 12), "m", None)


def test_a_malformed_response_is_an_input_error_naming_the_output() -> None:
    doc = {"outputs": [{"name": "y", "datatype": "FP32", "shape": [1],
                        "parameters": {"binary_data_size": 8}}]}
    with pytest.raises(InputError, match="output 'y': 8 bytes of binary data do not fit FP32"):
        decode_response(doc, memoryview(b"\0" * 8))
    with pytest.raises(InputError, match="'outputs' list"):
        decode_response({"model_name": "m"}, memoryview(b""))


def test_a_json_bytes_element_ending_in_nul_keeps_it() -> None:
    doc = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1], "data": ["a\x00"]}]}
    assert decode_request(doc, memoryview(b""), "m", None).inputs[0].data.tolist() == [b"a\x00"]


def test_nested_json_bytes_keep_their_nul_characters() -> None:
    doc = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2, 2],
                       "data": [["a\x00", "b"], ["\x00", "\x00c\x00"]]}]}
    data = decode_request(doc, memoryview(b""), "m", None).inputs[0].data
    assert data.shape == (2, 2)
    assert data.tolist() == [[b"a\x00", b"b"], [b"\x00", b"\x00c\x00"]]
