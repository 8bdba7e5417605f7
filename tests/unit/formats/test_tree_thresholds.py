"""Rows at split thresholds and thresholds rounded for float32 inputs (issue 17, item 2)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ferry.formats._trees import snap_thresholds
from ferry.formats.parity import Split, split_samples
from ferry.repository import ParityReport

DOWN, UP = np.float32(-np.inf), np.float32(np.inf)
#: The issue's threshold: LightGBM's double just below float32(5.05) = 5.050000190734863.
ISSUE_T = 5.049999952316285


def test_three_rows_per_distinct_threshold_that_follow_the_path():
    splits = [
        Split(0, ISSUE_T),
        Split(1, 2.0, path=((0, 1.0, True),)),   # reached with feature 0 below 1.0
        Split(1, 2.0, path=((0, 9.0, False),)),  # the same threshold again: no new rows
        Split(2, -3.5, path=((0, 1.0, False), (0, 4.0, True))),  # 1.0 < x0 < 4.0
    ]
    rows = split_samples(splits, features=3, seed=0)
    assert rows.shape == (9, 3) and rows.dtype == np.float32
    near = np.float32(ISSUE_T)
    assert list(rows[0:3, 0]) == [np.nextafter(near, DOWN), near, np.nextafter(near, UP)]
    assert list(rows[3:6, 1]) == [np.nextafter(np.float32(2), DOWN), 2.0,
                                  np.nextafter(np.float32(2), UP)]
    assert (rows[3:6, 0] < 1.0).all()
    assert ((rows[6:9, 0] > 1.0) & (rows[6:9, 0] < 4.0)).all()
    np.testing.assert_array_equal(rows, split_samples(splits, features=3, seed=0))


def _ensemble(modes: list[str], thresholds: list[float]) -> onnx.ModelProto:
    """A TreeEnsembleRegressor with one tree per threshold (tree i splits feature i), its
    values rounded to the nearest float32 as converters write them."""
    count = len(modes)
    node = helper.make_node(
        "TreeEnsembleRegressor", ["input"], ["variable"], domain="ai.onnx.ml", n_targets=1,
        nodes_treeids=[t for t in range(count) for _ in range(3)],
        nodes_nodeids=[0, 1, 2] * count, nodes_featureids=[t for t in range(count) for _ in "abc"],
        nodes_modes=[m for mode in modes for m in (mode, "LEAF", "LEAF")],
        nodes_values=[v for t in thresholds for v in (float(np.float32(t)), 0.0, 0.0)],
        nodes_truenodeids=[1, 0, 0] * count, nodes_falsenodeids=[2, 0, 0] * count,
        target_ids=[0, 0] * count, target_nodeids=[1, 2] * count,
        target_treeids=[t for t in range(count) for _ in range(2)],
        target_weights=[0.0, 1.0] * count,
    )
    graph = helper.make_graph(
        [node], "trees",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, count])],
        [helper.make_tensor_value_info("variable", onnx.TensorProto.FLOAT, [None, 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 1)])


def _values(model: onnx.ModelProto) -> list[np.float32]:
    attrs = {a.name: a for a in model.graph.node[0].attribute}
    return [np.float32(v) for v in attrs["nodes_values"].floats][::3]


def test_thresholds_round_so_every_float32_input_takes_the_frameworks_branch():
    exact = [ISSUE_T, 0.1, 1.5, float(np.float32(0.1)), ISSUE_T, 0.1]
    modes = ["BRANCH_LEQ", "BRANCH_LEQ", "BRANCH_LEQ", "BRANCH_LT", "BRANCH_GT", "BRANCH_GTE"]
    model = _ensemble(modes, exact)
    splits = [Split(i, t) for i, t in enumerate(exact)]
    changed, unmatched = snap_thresholds(model, splits)
    assert unmatched == 0
    # float32(ISSUE_T) and float32(0.1) are above the doubles: moved for <= (twice) and >;
    # 1.5 and float32(0.1) are exact; for >= the double 0.1 rounds up, where it was.
    assert changed == 3
    compare = {"BRANCH_LEQ": np.less_equal, "BRANCH_LT": np.less,
               "BRANCH_GT": np.greater, "BRANCH_GTE": np.greater_equal}
    for mode, t, w in zip(modes, exact, _values(model), strict=True):
        near = np.float32(t)
        xs = [near, np.nextafter(near, DOWN), np.nextafter(near, UP),
              np.nextafter(np.nextafter(near, UP), UP)]
        for x in xs:  # the framework: the float32 input against the double threshold
            assert compare[mode](np.float32(x), w) == compare[mode](float(x), t), (mode, t, x)
    assert _values(model)[0] == np.nextafter(np.float32(ISSUE_T), DOWN)


def test_a_threshold_the_source_lacks_is_left_and_counted():
    model = _ensemble(["BRANCH_LEQ", "BRANCH_LEQ"], [ISSUE_T, 7.25])
    changed, unmatched = snap_thresholds(model, [Split(0, ISSUE_T), Split(3, 7.25)])  # not 1
    assert (changed, unmatched) == (1, 1)
    assert _values(model)[1] == np.float32(7.25)


def test_manifests_written_before_threshold_rows_still_read():
    old = {"method": "onnxruntime vs lightgbm", "samples": 64, "inputs": "drawn",
           "tolerance": 1e-5, "max_abs_diff": {"probabilities": 1e-7}, "passed": True}
    assert ParityReport.model_validate(old).threshold_rows is None
    assert ParityReport.model_validate({**old, "threshold_rows": 492}).threshold_rows == 492
