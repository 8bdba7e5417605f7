"""The console's live figures: percentiles from histogram buckets, windows between readings."""

from __future__ import annotations

import math

import pytest

from ferry.console.live import MIN_INTERVAL, LiveView, quantile, read_metrics
from ferry.observability.metrics import Metrics


def test_quantile_interpolates_within_the_bucket():
    buckets = {0.001: 50.0, 0.01: 90.0, 0.1: 100.0, math.inf: 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.001)
    assert quantile(0.25, buckets) == pytest.approx(0.0005)
    assert quantile(0.7, buckets) == pytest.approx(0.001 + 0.009 * 0.5)
    assert quantile(0.99, buckets) == pytest.approx(0.01 + 0.09 * 0.9)


def test_quantile_of_nothing_and_of_the_overflow_bucket():
    assert quantile(0.5, {}) is None
    assert quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    assert quantile(0.99, {0.1: 1.0, math.inf: 10.0}) == 0.1  # past the last finite bound


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _serve(metrics: Metrics, n: int, seconds: float, status: str = "200") -> None:
    for _ in range(n):
        metrics.request(model="digits", version="1", protocol="rest", status=status,
                        seconds=seconds)
        metrics.stage("compute", model="digits", seconds=seconds / 2)


@pytest.mark.parametrize("lean", [True, False])
def test_a_window_counts_what_happened_since_the_last_reading(lean):
    metrics = Metrics(lean=lean)
    metrics.served("digits", ["1"])
    clock = Clock()
    view = LiveView(metrics, clock)
    _serve(metrics, 10, 0.5)  # before the first reading: totals only, no rate
    first = view.figures(["digits", "idle"])
    assert first["interval_s"] is None
    assert first["models"]["digits"]["requests_total"] == 10
    assert first["models"]["digits"]["rps"] == 0
    assert first["models"]["idle"]["requests_total"] == 0  # served, never asked
    clock.now += 2.0
    _serve(metrics, 40, 0.0002)
    _serve(metrics, 6, 0.0002, status="429")
    _serve(metrics, 2, 0.0002, status="500")
    second = view.figures(["digits"])
    digits = second["models"]["digits"]
    assert second["interval_s"] == 2.0
    assert digits["rps"] == 24.0 and digits["refused_per_s"] == 3.0
    assert digits["errors_per_s"] == 1.0
    assert digits["requests_total"] == 58 and digits["refused_total"] == 6
    # Only the window's requests: all in the (0.0001, 0.00025] bucket, none of the slow ones.
    assert 0.1 < digits["p50_ms"] <= 0.25 and 0.1 < digits["p99_ms"] <= 0.25
    assert 0.05 < digits["stages"]["compute"]["p99_ms"] <= 0.1
    assert second["total"]["rps"] == 24.0 and second["total"]["p99_ms"] == digits["p99_ms"]


def test_a_reading_is_shared_while_it_is_fresh():
    metrics = Metrics(lean=True)
    metrics.served("digits", ["1"])
    clock = Clock()
    view = LiveView(metrics, clock)
    first = view.figures(["digits"])
    _serve(metrics, 5, 0.001)
    clock.now += MIN_INTERVAL / 2
    assert view.figures(["digits"]) is first  # a second watcher: no new reading
    clock.now += MIN_INTERVAL
    assert view.figures(["digits"])["models"]["digits"]["requests_total"] == 5


def test_per_version_counts_and_unknown_names():
    metrics = Metrics(lean=True)
    metrics.served("digits", ["1", "2"])
    metrics.request(model="digits", version="2", protocol="grpc", status="OK", seconds=0.001)
    metrics.request(model="digits", version="2", protocol="grpc", status="RESOURCE_EXHAUSTED",
                    seconds=0.001)
    metrics.request(model="nope", version="", protocol="rest", status="404", seconds=0.001)
    reading = read_metrics(metrics)
    assert reading.versions[("digits", "2")] == {"ok": 1.0, "refused": 1.0, "errors": 0.0}
    assert ("digits", "1") not in reading.versions
    figures = LiveView(metrics).figures(["digits"])
    assert figures["models"]["(other)"]["errors_total"] == 1
