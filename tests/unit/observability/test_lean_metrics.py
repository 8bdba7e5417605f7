"""Lean metrics (plain numbers, a collector at scrape time) expose exactly what
prometheus-client's own metrics expose for the same observations."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ferry.observability.metrics import UNKNOWN, LeanHistogram, Metrics


def _observe(metrics: Metrics, rng: random.Random) -> None:
    metrics.served("digits", ["1"])
    metrics.served("fraud", ["1"])
    for _ in range(500):
        model = rng.choice(["digits", "fraud"])
        status = rng.choice(["200", "200", "400", "429"])
        metrics.request(model=model, version="1" if status == "200" else "", protocol="rest",
                        status=status, seconds=rng.choice([0.00005, 0.0003, 0.02, 3.0, 20.0]))
        metrics.stage(rng.choice(["decode", "encode"]), model=model,
                      seconds=rng.random() / 1000)
        bound = metrics.for_model(model)
        bound.batch_size.observe(rng.choice([1, 3, 64, 2000]))
        bound.queue.observe(rng.random() / 100)
        bound.compute.observe(rng.random() / 100)
        bound.inflight.inc()
        bound.inflight.dec()
        bound.queue_depth.set(rng.randrange(10))
    metrics.model_loaded("digits", "1", 0.25)


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render()[0].decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):  # prometheus-client's own extra series
                continue
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_lean_and_client_metrics_expose_the_same_values() -> None:
    lean, client = Metrics(lean=True), Metrics(lean=False)
    _observe(lean, random.Random(3))
    _observe(client, random.Random(3))
    got, want = _samples(lean), _samples(client)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    assert got[("ferry_requests_total", (("model", "digits"), ("protocol", "rest"),
                                         ("status", "200"), ("version", "1")))] > 0


def test_a_histogram_counts_an_observation_on_a_bound_in_that_bucket() -> None:
    hist = LeanHistogram((0.1, 1.0))
    for value in (0.1, 0.05, 1.0, 1.5, float("inf")):
        hist.observe(value)
    assert hist.counts == [2, 1, 2]  # le=0.1: 0.05, 0.1; le=1.0: 1.0; +Inf: 1.5, inf
    assert hist.sum == float("inf")


def test_metrics_are_lean_unless_shared_with_workers(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path) -> None:
    assert Metrics().lean is True
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert Metrics().lean is False


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "client"])
def test_only_served_models_and_versions_become_label_values(lean: bool) -> None:
    """Issue 13: every unknown name a client sends shares one series, not one each."""
    metrics = Metrics(lean=lean)
    metrics.served("mlp", ["1", "2"])
    for i in range(2000):
        metrics.request(model=f"nope-{i}", version=str(i), protocol="grpc",
                        status="NOT_FOUND", seconds=0.001)
        metrics.request(model="mlp", version=f"v{i}", protocol="grpc", status="NOT_FOUND",
                        seconds=0.001)
        metrics.stage("decode", model=f"nope-{i}", seconds=0.001)
    metrics.request(model="mlp", version="2", protocol="rest", status="200", seconds=0.001)
    samples = _samples(metrics)
    models = {dict(labels).get("model") for _, labels in samples}
    versions = {dict(labels).get("version") for _, labels in samples} - {None}
    assert models == {UNKNOWN, "mlp"}
    assert versions == {UNKNOWN, "2"}
    requests = {labels: value for (name, labels), value in samples.items()
                if name == "ferry_requests_total"}
    assert requests[(("model", ""), ("protocol", "grpc"), ("status", "NOT_FOUND"),
                     ("version", ""))] == 2000
    assert requests[(("model", "mlp"), ("protocol", "grpc"), ("status", "NOT_FOUND"),
                     ("version", ""))] == 2000
    assert len(metrics.render()[0]) < 20_000


def test_a_model_no_longer_served_is_counted_as_unknown() -> None:
    metrics = Metrics(lean=True)
    metrics.served("mlp", ["1"])
    metrics.request(model="mlp", version="1", protocol="rest", status="200", seconds=0.0)
    metrics.served("mlp", ())
    metrics.request(model="mlp", version="1", protocol="rest", status="404", seconds=0.0)
    requests = {labels: value for (name, labels), value in _samples(metrics).items()
                if name == "ferry_requests_total"}
    assert requests == {
        (("model", "mlp"), ("protocol", "rest"), ("status", "200"), ("version", "1")): 1.0,
        (("model", ""), ("protocol", "rest"), ("status", "404"), ("version", "")): 1.0,
    }


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "client"])
def test_breaker_series_exist_only_for_served_versions_with_a_breaker(lean: bool) -> None:
    metrics = Metrics(lean=lean)
    metrics.served("digits", ["1", "2"])
    metrics.breaker_changed("digits", "2", 2)
    metrics.breaker_changed("digits", "1", None)  # no breaker: no series, nothing to remove
    metrics.fell_back("digits")
    got = _samples(metrics)
    assert got[("ferry_breaker_state", (("model", "digits"), ("version", "2")))] == 2
    assert ("ferry_breaker_state", (("model", "digits"), ("version", "1"))) not in got
    assert got[("ferry_fallbacks_total", (("model", "digits"),))] == 1
    metrics.served("digits", ["1"])  # version 2 retired: its breaker's series goes
    assert not [key for key in _samples(metrics) if key[0] == "ferry_breaker_state"]


def test_under_workers_a_breaker_that_is_gone_shows_closed(tmp_path) -> None:
    # prometheus-client picks its file-backed values when it is imported: a fresh process.
    script = """
import warnings
warnings.simplefilter("error")  # removing a series would warn in this mode
from ferry.observability.metrics import Metrics
metrics = Metrics()
metrics.served("digits", ["1", "2"])
metrics.breaker_changed("digits", "2", 2)
metrics.breaker_changed("digits", "1", None)  # never had one: nothing to remove
metrics.served("digits", ["1"])  # prometheus-client cannot remove it here: it shows 0
print(metrics.render()[0].decode())
"""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    states = {tuple(sorted(s.labels.items())): s.value
              for family in text_string_to_metric_families(done.stdout)
              if family.name == "ferry_breaker_state" for s in family.samples}
    assert states == {(("model", "digits"), ("version", "2")): 0.0}
