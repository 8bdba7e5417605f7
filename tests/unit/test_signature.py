from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from ferry.errors import InputError, NotFoundError
from ferry.signature import (
    DATATYPES,
    MAX_DIM,
    MAX_ELEMENTS,
    MAX_RANK,
    Signature,
    TensorSpec,
    as_array,
    check_shape,
    datatype_of,
    numpy_dtype,
)

X = TensorSpec(name="x", datatype="FP32", shape=(-1, 64))
SIG = Signature(inputs=(X,), outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1, 10)),))


def test_every_v2_datatype_round_trips_through_numpy():
    for name, dtype in DATATYPES.items():
        assert numpy_dtype(name) == dtype
        assert datatype_of(dtype) == name


def test_strings_and_bytes_map_to_bytes():
    assert datatype_of(np.dtype("U5")) == "BYTES"
    assert datatype_of(np.dtype("S3")) == "BYTES"


def test_unknown_names_and_dtypes_are_refused_with_the_valid_ones():
    with pytest.raises(InputError, match="unknown datatype 'FLOAT'.*FP32"):
        numpy_dtype("FLOAT")
    with pytest.raises(InputError, match="complex128 has no"):
        datatype_of(np.complex128)


def test_shape_mismatch_message_is_precise():
    with pytest.raises(InputError) as err:
        SIG.check_inputs({"x": np.zeros((3, 63), np.float32)})
    assert str(err.value) == "input 'x': expected FP32 with shape [-1, 64], got shape [3, 63]"


def test_dtype_mismatch_names_both_types():
    with pytest.raises(InputError, match=r"expected FP32 with shape \[-1, 64\], got INT64 with shape \[2, 64\]"):
        SIG.check_inputs({"x": np.zeros((2, 64), np.int64)})


def test_rank_mismatch_is_refused():
    with pytest.raises(InputError, match=r"got shape \[64\]"):
        SIG.check_inputs({"x": np.zeros(64, np.float32)})


def test_missing_and_unknown_inputs_are_named():
    with pytest.raises(InputError, match=r"missing input 'x': expected FP32 with shape \[-1, 64\]"):
        SIG.check_inputs({})
    with pytest.raises(InputError, match="unknown input 'z'; the model's inputs are 'x'"):
        SIG.check_inputs({"x": np.zeros((1, 64), np.float32), "z": np.zeros(1)})


def test_inputs_must_agree_on_batch_size():
    sig = Signature(
        inputs=(TensorSpec(name="a", datatype="FP32", shape=(-1, 2)),
                TensorSpec(name="b", datatype="INT64", shape=(-1,))),
        outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1,)),),
    )
    with pytest.raises(InputError, match="disagree on the batch size .*'a': 3, 'b': 2"):
        sig.check_inputs({"a": np.zeros((3, 2), np.float32), "b": np.zeros(2, np.int64)})


def test_valid_inputs_pass():
    SIG.check_inputs({"x": np.zeros((5, 64), np.float32)})


def test_batch_axis_needs_variable_first_dim_everywhere():
    assert SIG.batch_axis
    fixed = Signature(inputs=(TensorSpec(name="x", datatype="FP32", shape=(1, 64)),),
                      outputs=SIG.outputs)
    assert not fixed.batch_axis


def test_output_lookup_and_requested_outputs():
    assert SIG.output("y").shape == (-1, 10)
    with pytest.raises(NotFoundError, match="unknown output 'z'; the model's outputs are 'y'"):
        SIG.output("z")
    with pytest.raises(InputError, match="unknown output 'z'"):
        SIG.check_output_names(["y", "z"])


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"name": "", "datatype": "FP32", "shape": [1]}, "must not be empty"),
        ({"name": "x", "datatype": "FLOAT", "shape": [1]}, "unknown datatype"),
        ({"name": "x", "datatype": "FP32", "shape": [-2]}, "must be >= 0 or -1"),
    ],
    ids=["empty-name", "bad-datatype", "bad-dim"],
)
def test_invalid_specs_are_refused(spec, error):
    with pytest.raises(ValidationError, match=error):
        TensorSpec.model_validate(spec)


def test_duplicate_names_are_refused():
    with pytest.raises(ValidationError, match="duplicate input names: x"):
        Signature(inputs=(X, X), outputs=SIG.outputs)


class TestAsArray:
    def test_ints_become_floats(self):
        arr = as_array(X, [[1, 2], [3, 4]])
        assert arr.dtype == np.float32 and arr.shape == (2, 2)

    def test_floats_are_not_truncated_into_ints(self):
        spec = TensorSpec(name="n", datatype="INT32", shape=(-1,))
        with pytest.raises(InputError, match="input 'n': expected INT32 values, got floating-point"):
            as_array(spec, [1.5, 2.0])

    def test_out_of_range_ints_are_refused(self):
        spec = TensorSpec(name="n", datatype="UINT8", shape=(-1,))
        with pytest.raises(InputError, match=r"value 300 is out of range for UINT8 \[0, 255\]"):
            as_array(spec, [1, 300])
        with pytest.raises(InputError, match="value -1 is out of range"):
            as_array(spec, [-1])

    def test_strings_where_numbers_are_expected(self):
        with pytest.raises(InputError, match="expected FP32 values, got strings"):
            as_array(X, ["1.0", "2.0"])

    def test_ragged_lists(self):
        with pytest.raises(InputError, match="not a rectangular array"):
            as_array(X, [[1.0, 2.0], [3.0]])

    def test_bytes_tensors_hold_bytes(self):
        spec = TensorSpec(name="s", datatype="BYTES", shape=(-1,))
        arr = as_array(spec, ["héllo", "b"])
        assert arr.dtype == object and arr.tolist() == ["héllo".encode(), b"b"]
        with pytest.raises(InputError, match="expected BYTES values, got integers"):
            as_array(spec, [1, 2])

    def test_bools(self):
        spec = TensorSpec(name="b", datatype="BOOL", shape=(-1,))
        assert as_array(spec, [True, False]).dtype == np.bool_
        with pytest.raises(InputError, match="expected BOOL values, got integers"):
            as_array(spec, [1, 0])


@pytest.mark.parametrize(("shape", "count"), [
    ((), 1), ((0,), 0), ((3, 4), 12), ((0, MAX_DIM), 0), ((MAX_DIM,), MAX_DIM),
    ((1,) * MAX_RANK, 1),
], ids=["scalar", "empty", "matrix", "empty-widest", "widest", "deepest"])
def test_check_shape_counts_the_elements_of_a_shape_within_bounds(shape, count):
    assert check_shape("input 'x'", shape) == count
    if count == 0:  # numpy takes every empty shape within the bounds
        assert np.empty(0, np.float64).reshape(shape).size == 0


@pytest.mark.parametrize(("shape", "phrase"), [
    ((0, 2**62), f"dimension {2**62} of shape [0, {2**62}] is above the maximum of {MAX_DIM}"),
    ((0, MAX_DIM, MAX_DIM), f"at most {MAX_ELEMENTS} are allowed"),
    ((2**16, 2**16), "describes 4294967296 elements"),
    ((1, -1), "negative dimension"),
    ((1,) * (MAX_RANK + 1), f"at most {MAX_RANK} are possible"),
], ids=["zero-times-huge", "zero-times-wide", "too-many-elements", "negative", "rank"])
def test_check_shape_refuses_what_numpy_could_not_make(shape, phrase):
    """Issue 13: [0, 2**62] made numpy's reshape raise "array is too big" (a 500)."""
    with pytest.raises(InputError, match="input 'x'") as caught:
        check_shape("input 'x'", shape)
    assert phrase in caught.value.message
