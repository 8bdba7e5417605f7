"""The built-in transforms: their ports at validation and their numbers at run time."""

from __future__ import annotations

import numpy as np
import pytest

from ferry.errors import ArtifactError
from ferry.pipelines.transforms import TRANSFORMS, Port, make_transform, merge_shapes

LABELS = ("a", "b", "c")


def _make(name, inputs, **options):
    transform = make_transform(name, options, "step 't'")
    return transform, transform.ports(inputs)


def test_merge_shapes():
    assert merge_shapes((-1, 3), (5, -1)) == (5, 3)
    assert merge_shapes((-1, 3), (-1, 4)) is None
    assert merge_shapes((-1,), (-1, 1)) is None


def test_softmax_argmax_top_k_with_labels():
    scores = Port("FP32", (-1, 3), LABELS)
    x = np.array([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]], np.float32)
    softmax, ports = _make("softmax", [scores])
    assert ports == {"output": scores}
    probs = softmax([x])["output"]
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), rtol=1e-6)

    argmax, ports = _make("argmax", [scores], labels=True)
    assert ports == {"index": Port("INT64", (-1,)), "label": Port("BYTES", (-1,))}
    out = argmax([x])
    assert out["index"].tolist() == [1, 2] and out["label"].tolist() == [b"b", b"c"]

    top, ports = _make("top_k", [scores], k=2, labels=["x", "y", "z"])
    assert ports["indices"] == Port("INT64", (-1, 2)) and ports["labels"].datatype == "BYTES"
    out = top([x])
    assert out["indices"].tolist() == [[1, 2], [2, 0]]
    assert out["scores"].tolist() == [[3.0, 2.0], [5.0, 0.0]]
    assert out["labels"].tolist() == [[b"y", b"z"], [b"z", b"x"]]


def test_scale_normalize_cast_select_concatenate():
    port = Port("FP64", (-1, 2))
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    scale, _ = _make("scale", [port], factor=2, offset=1)
    assert scale([x])["output"].tolist() == [[7.0, 9.0], [1.0, 1.0]]
    norm, _ = _make("normalize", [port])
    assert norm([x])["output"].tolist() == [[0.6, 0.8], [0.0, 0.0]]  # a zero row stays zero
    cast, ports = _make("cast", [port], datatype="INT32")
    assert ports["output"] == Port("INT32", (-1, 2))
    assert cast([x])["output"].dtype == np.int32
    one, ports = _make("select", [port], column=1)
    assert ports["output"] == Port("FP64", (-1,)) and one([x])["output"].tolist() == [4.0, 0.0]
    many, ports = _make("select", [port], columns=[1, 0])
    assert ports["output"] == Port("FP64", (-1, 2))
    assert many([x])["output"].tolist() == [[4.0, 3.0], [0.0, 0.0]]
    cat, ports = _make("concatenate", [port, Port("FP64", (-1, 3))])
    assert ports["output"] == Port("FP64", (-1, 5))
    assert cat([x, np.ones((2, 3))])["output"].shape == (2, 5)


def test_average_weighted_average_and_vote():
    p = Port("FP32", (-1, 3), LABELS)
    a = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]], np.float32)
    b = np.array([[0.2, 0.5, 0.3], [0.3, 0.4, 0.3]], np.float32)
    c = np.array([[0.1, 0.6, 0.3], [0.4, 0.35, 0.25]], np.float32)
    average, ports = _make("average", [p, p, p])
    assert ports == {"output": p}
    np.testing.assert_allclose(average([a, b, c])["output"], (a + b + c) / 3, rtol=1e-6)
    weighted, _ = _make("weighted_average", [p, p, p], weights=[2, 1, 1])
    np.testing.assert_allclose(weighted([a, b, c])["output"], (2 * a + b + c) / 4, rtol=1e-6)
    vote, ports = _make("vote", [p, p, p], labels=True)
    assert set(ports) == {"index", "label"}
    out = vote([a, b, c])
    # row 0: votes 0, 1, 1 -> 1; row 1: 2, 1, 0 (a tie) -> the highest summed score, class 2
    assert out["index"].tolist() == [1, 2] and out["label"].tolist() == [b"b", b"c"]
    ids, ports = _make("vote", [Port("INT64", (-1,))] * 3)
    assert ports == {"index": Port("INT64", (-1,))}
    votes = ids([np.array([0, 2]), np.array([1, 2]), np.array([1, 0])])["index"]
    assert votes.tolist() == [1, 2]


@pytest.mark.parametrize("name,inputs,options,message", [
    ("softmax", [Port("INT64", (-1, 3))], {}, "needs floating-point scores, got INT64"),
    ("top_k", [Port("FP32", (-1, 3))], {"k": 4}, "k = 4 is more than the 3 classes"),
    ("top_k", [Port("FP32", (-1, 3))], {"k": 2, "labels": ["a"]}, "1 labels for 3 classes"),
    ("argmax", [Port("FP32", (-1, 3))], {"labels": True}, "its input carries no class labels"),
    ("average", [Port("FP32", (-1, 3)), Port("FP32", (-1, 4))], {}, "differ in shape"),
    ("average", [Port("FP32", (-1, 3), ("a", "b", "c")), Port("FP32", (-1, 3), ("x", "y", "z"))],
     {}, "do not share a label set"),
    ("average", [Port("FP32", (-1, 3))], {}, "takes at least 2 input(s), 1 wired"),
    ("weighted_average", [Port("FP32", (-1, 3))] * 2, {"weights": [1]}, "weights must be 2"),
    ("cast", [Port("FP32", (-1, 3))], {"datatype": "BYTES"}, "datatype must be one of"),
    ("select", [Port("FP32", (-1, 3))], {"column": 3}, "column 3 is out of range"),
    ("concatenate", [Port("FP32", (-1, 3)), Port("INT64", (-1, 3))], {}, "its inputs differ"),
    ("softmax", [Port("FP32", (-1, 3))], {"temperature": 2}, "unknown option 'temperature'"),
])
def test_bad_wiring_and_options_are_refused_naming_the_step(name, inputs, options, message):
    with pytest.raises(ArtifactError) as caught:
        make_transform(name, options, "step 't'").ports(inputs)
    assert str(caught.value).startswith("step 't': ")
    assert message in str(caught.value)


def test_unknown_transform_lists_them():
    with pytest.raises(ArtifactError, match="unknown transform 'soft' \\(transforms: argmax, "):
        make_transform("soft", {}, "step 't'")
    assert len(TRANSFORMS) == 11
