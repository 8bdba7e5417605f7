from __future__ import annotations

import io
import json

import numpy as np
import pytest

from ferry.arrays import parse_arrays, read_arrays
from ferry.errors import InputError, NotFoundError
from ferry.signature import Signature, TensorSpec

ONE = Signature(inputs=(TensorSpec(name="x", datatype="FP32", shape=(-1, 3)),),
                outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1,)),))
TWO = Signature(
    inputs=(TensorSpec(name="a", datatype="FP32", shape=(-1, 2)),
            TensorSpec(name="b", datatype="INT64", shape=(-1,))),
    outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1,)),),
)


def _json(doc):
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "doc",
    [
        {"data": [[1, 2, 3]]},
        {"instances": [[1, 2, 3]]},
        {"inputs": {"x": [[1, 2, 3]]}},
        {"x": [[1, 2, 3]]},
        [[1, 2, 3]],
        [1, 2, 3],
        {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
    ],
    ids=["seed", "tf-serving", "named", "bare-named", "list", "one-row", "v2"],
)
def test_json_layouts(doc):
    arrays = parse_arrays(_json(doc), ONE)
    assert arrays["x"].dtype == np.float32
    np.testing.assert_array_equal(arrays["x"], [[1, 2, 3]])


def test_numpy_files(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.ones((2, 3), np.float64))
    assert parse_arrays(buf.getvalue(), ONE)["x"].dtype == np.float32
    np.savez(tmp_path / "s.npz", a=np.zeros((4, 2)), b=np.arange(4))
    arrays = read_arrays(tmp_path / "s.npz", TWO)
    assert arrays["a"].shape == (4, 2) and arrays["b"].dtype == np.int64


def test_object_arrays_in_npy_are_not_unpickled():
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="unreadable .npy"):
        parse_arrays(buf.getvalue(), ONE)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no input data"),
        (b"{oops", "not JSON, .npy or .npz"),
        (_json({"other": 1}), "no inputs found"),
        (_json(3), "expected a JSON object or list"),
        (_json({"inputs": [{"name": "x", "shape": [2, 3], "data": [1, 2, 3]}]}), "needs 6 values, got 3"),
        (_json({"inputs": [{"name": "x", "datatype": "INT8", "data": [1]}]}), "expected datatype FP32, got INT8"),
    ],
    ids=["empty", "bad-json", "no-inputs", "scalar", "shape-vs-data", "datatype"],
)
def test_bad_documents(data, message):
    with pytest.raises(InputError, match=message):
        parse_arrays(data, ONE)


def test_single_array_for_a_two_input_model_is_refused():
    with pytest.raises(InputError, match="the model has 2 inputs"):
        parse_arrays(_json({"data": [[1, 2]]}), TWO)


def test_unknown_input_name():
    with pytest.raises(NotFoundError, match="unknown input 'z'"):
        parse_arrays(_json({"inputs": {"z": [1]}}), ONE)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_arrays(tmp_path / "nope.json", ONE)
    with pytest.raises(InputError, match="is a directory"):
        read_arrays(tmp_path, ONE)
