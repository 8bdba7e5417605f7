"""ferry.codec.request: the one place requests are built, and clients' arrays as tensors."""

from __future__ import annotations

import numpy as np
import pytest

from ferry.codec.request import infer_request, named_tensors
from ferry.errors import InputError
from ferry.inference import Tensor


def _t(name: str) -> Tensor:
    return Tensor(name, "FP32", (1,), np.zeros(1, np.float32))


def test_a_request_keeps_every_field() -> None:
    request = infer_request("m", [_t("a"), _t("b")], model_version="2", id="i",
                            parameters={"p": True})
    assert (request.model_name, request.model_version, request.id) == ("m", "2", "i")
    assert [t.name for t in request.inputs] == ["a", "b"]
    assert request.parameters == {"p": True} and request.outputs is None


def test_an_input_given_twice_is_refused() -> None:
    with pytest.raises(InputError, match="input 'a' appears more than once in the request"):
        infer_request("m", [_t("a"), _t("b"), _t("a")])


def test_a_model_name_is_required() -> None:
    with pytest.raises(InputError, match="model_name is empty"):
        infer_request("", [_t("a")])


def test_client_arrays_keep_their_dtype_and_strings_become_utf8_bytes() -> None:
    number, text = named_tensors({"n": np.arange(4, dtype=np.int16).reshape(2, 2),
                                  "s": np.array(["é", "b"])})
    assert (number.datatype, number.shape, number.data.dtype) == ("INT16", (2, 2), np.int16)
    assert text.datatype == "BYTES" and text.data.tolist() == ["é".encode(), b"b"]
    assert named_tensors({"l": [[1.5, 2.0]]})[0].datatype == "FP64"


def test_a_dtype_with_no_v2_datatype_is_refused() -> None:
    with pytest.raises(InputError, match="no Open Inference Protocol datatype"):
        named_tensors({"c": np.zeros(2, np.complex64)})
