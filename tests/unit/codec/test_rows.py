"""ferry.codec.rows: /predict and TF Serving bodies as requests, and outputs as their rows."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from ferry.codec.rows import (
    json_value,
    predict_answer,
    predict_request,
    tfserving_answer,
    tfserving_request,
)
from ferry.errors import InputError
from ferry.inference import InferResponse, ModelMetadata, Tensor
from ferry.signature import TensorSpec

ONE = ModelMetadata("m", ["1"], "onnx", (TensorSpec(name="x", datatype="FP32", shape=(-1, 2)),),
                    (TensorSpec(name="y", datatype="FP32", shape=(-1, 2)),), labels=["a", "b"])
TWO = ModelMetadata("m", ["1"], "onnx",
                    (TensorSpec(name="x", datatype="FP32", shape=(-1, 2)),
                     TensorSpec(name="k", datatype="INT64", shape=(-1,))),
                    (TensorSpec(name="y", datatype="FP32", shape=(-1, 2)),))


def test_predict_rows_become_the_input_in_its_datatype() -> None:
    request = predict_request(ONE, "m", "1", {"data": [[1, 2], [3, 4]]})
    (x,) = request.inputs
    assert (x.name, x.datatype, x.data.dtype, x.shape) == ("x", "FP32", np.float32, (2, 2))
    # One output: asked for all of them (that one), as a V2 request that names none is.
    assert request.outputs is None and request.model_version == "1"


def test_predict_asks_a_model_with_several_outputs_for_its_first() -> None:
    meta = ModelMetadata("m", ["1"], "onnx", ONE.inputs,
                         (TensorSpec(name="label", datatype="INT64", shape=(-1,)),
                          TensorSpec(name="probabilities", datatype="FP32", shape=(-1, 2))))
    request = predict_request(meta, "m", None, {"data": [[1, 2]]})
    assert [o.name for o in request.outputs or []] == ["label"]


def test_a_single_row_gets_its_batch_axis() -> None:
    assert predict_request(ONE, "m", None, {"data": [1, 2]}).inputs[0].shape == (1, 2)


@pytest.mark.parametrize(("meta", "doc", "phrase"), [
    (TWO, {"data": [[1, 2]]}, "has 2 inputs"),
    (ONE, {"data": [[1, 2]], "inputs": {"x": [[1, 2]]}}, "not both"),
    (ONE, {"inputs": {"z": [1]}}, "unknown input 'z'"),
    (ONE, {"data": [["a", "b"]]}, "input 'x': expected FP32 values"),
    (TWO, {"inputs": {"x": [[1, 2]], "k": [1.5]}}, "input 'k': expected INT64 values"),
], ids=["several-inputs", "both", "unknown", "strings", "float-for-int"])
def test_bad_predict_bodies_are_input_errors(meta, doc, phrase) -> None:
    with pytest.raises(InputError, match=phrase):
        predict_request(meta, "m", None, doc)


def test_predict_answer_has_labels_when_the_columns_match() -> None:
    y = np.array([[0.25, 0.75], [0.5, 0.125]], dtype=np.float32)
    answer = predict_answer(ONE, "m", InferResponse("m", "1", [Tensor("y", "FP32", y.shape, y)]))
    assert answer["labels"] == ["b", "a"] and answer["version"] == "1"
    assert orjson.loads(orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY))[
        "predictions"] == y.tolist()


def test_tfserving_named_instances_become_columns() -> None:
    request = tfserving_request(TWO, "m", None, {"instances": [{"x": [1, 2], "k": 3},
                                                               {"x": [3, 4], "k": 4}]})
    got = {t.name: t.data for t in request.inputs}
    assert got["x"].tolist() == [[1, 2], [3, 4]] and got["k"].dtype == np.int64


def test_tfserving_rows_must_name_the_same_inputs() -> None:
    with pytest.raises(InputError, match="every row must name the same inputs"):
        tfserving_request(TWO, "m", None, {"instances": [{"x": [1, 2], "k": 3}, {"x": [3, 4]}]})


def test_tfserving_answers_rows_or_columns() -> None:
    y = np.array([[1, 2], [3, 4]], dtype=np.float32)
    k = np.array([5, 6], dtype=np.int64)
    response = InferResponse("m", "1", [Tensor("y", "FP32", y.shape, y),
                                        Tensor("k", "INT64", k.shape, k)])
    rows = tfserving_answer(response, rows=True)["predictions"]
    assert [(r["y"].tolist(), r["k"]) for r in rows] == [([1, 2], 5), ([3, 4], 6)]
    columns = tfserving_answer(response, rows=False)["outputs"]
    assert columns["y"].tolist() == y.tolist() and columns["k"].tolist() == [5, 6]


def test_json_value_keeps_the_natural_shape_and_replaces_bad_utf8() -> None:
    assert json_value(np.array([[b"a"], [b"\xff"]], dtype=object)) == [["a"], ["\ufffd"]]
    assert json_value(np.float32(2.5)) == 2.5
