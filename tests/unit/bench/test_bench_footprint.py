"""benchmarks/footprint.py: its report and its answer check (no timing asserted)."""

from __future__ import annotations

import pytest
from benchmarks.footprint import Footprint, _check, render
from benchmarks.run import GROUPS


def _row(p50: float, calls: int) -> dict[str, float]:
    return {"calls": calls, "p50_us": p50, "p99_us": p50 * 2, "p999_us": p50 * 3,
            "mean_us": p50, "rss_kib": 81920}


def _result(ferry_p50: float, ort_p50: float, keras_p50: float, first: float) -> Footprint:
    return Footprint(
        install_bytes=150 * 2**20, packages={"onnxruntime": 100 * 2**20, "numpy": 40 * 2**20},
        import_s=[0.09, 0.08, 0.1], first_s=[first - 0.05, first, first + 0.05],
        first_rss_kib=60 * 1024,
        latency={"ferry": [_row(ferry_p50 + 5, 100_000), _row(ferry_p50, 100_000)],
                 "ort": [_row(ort_p50, 100_000), _row(ort_p50 + 1, 100_000)],
                 "keras": [_row(keras_p50, 2_000)]},
    )


def test_goals_are_judged_on_each_ways_best_round():
    text = render(_result(12.0, 10.0, 30_000.0, 0.25), {"cpu": "test"}, calls=100_000,
                  keras_calls=2_000)
    assert "12.0 µs vs 10.0 µs = 1.20 x | met" in text
    assert "= 2500 x | met" in text
    assert "| 0.250 s | met" in text
    assert "150.0 MiB" in text and "onnxruntime 100.0 MiB" in text
    assert "| Keras `model.predict(row)` (the seed's way) | 2,000 |" in text
    assert "round 2" in text  # every round is listed


def test_missed_goals_say_so():
    text = render(_result(20.0, 10.0, 100.0, 0.9), {}, calls=10, keras_calls=10)
    assert text.count("**not met**") == 3


def test_answers_that_disagree_fail_the_run():
    _check({"ort": [[1.0, 2.0]], "ferry": [[1.0, 2.00001]], "keras": [[1.00002, 2.0]]})
    with pytest.raises(RuntimeError, match="keras's answer differs from raw ONNX Runtime's"):
        _check({"ort": [[1.0, 2.0]], "keras": [[1.0, 2.5]]})


def test_footprint_is_a_group_of_the_benchmark():
    assert "footprint" in GROUPS
