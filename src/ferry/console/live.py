"""The console's live figures: rates and percentiles over the last second, from the metrics.

Nothing here runs on the inference path. The engine and the adapters already count every
request into :class:`~ferry.observability.metrics.Metrics`; :class:`LiveView` reads those
counters only when a watcher asks (``GET /console/api/live``, polled once a second), and
differences two readings: requests a second, 429s and errors a second, p50/p99 of the
end-to-end latency and of each stage from the histogram buckets' growth (interpolated
within a bucket, as Prometheus' ``histogram_quantile`` does), the batch sizes run, and the
queue depth now. With nobody watching it costs nothing; with several watchers a reading is
shared while it is younger than :data:`MIN_INTERVAL`.

The figures are the answering process's own: under ``--workers N`` each worker counts what
it served (a watcher's polls may reach different workers; the totals are per worker).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ferry.observability.metrics import STAGES, UNKNOWN, Metrics

__all__ = ["MIN_INTERVAL", "LiveView", "Reading", "quantile", "read_metrics"]

#: A reading younger than this is answered again instead of taking a new one (seconds).
MIN_INTERVAL = 0.5

#: Statuses that are refusals (REST, gRPC), and those that are successes.
_REFUSED = frozenset({"429", "RESOURCE_EXHAUSTED"})
_OK = frozenset({"200", "OK"})

Buckets = dict[float, float]  # upper bound -> cumulative count


@dataclass
class ModelCounts:
    """What the metrics hold for one model at one instant (cumulative, since start)."""

    ok: float = 0.0
    refused: float = 0.0
    errors: float = 0.0
    latency: Buckets = field(default_factory=dict)
    stages: dict[str, Buckets] = field(default_factory=dict)
    batch: Buckets = field(default_factory=dict)
    queue_depth: float = 0.0
    inflight: float = 0.0


@dataclass
class Reading:
    """One reading of the metrics: per model counts, and per (model, version) status counts."""

    at: float
    models: dict[str, ModelCounts]
    versions: dict[tuple[str, str], dict[str, float]]


def _merge(into: Buckets, bound: float, count: float) -> None:
    into[bound] = into.get(bound, 0.0) + count


def read_metrics(metrics: Metrics, now: Callable[[], float] = time.monotonic) -> Reading:
    """Read every counter the console shows from ``metrics`` (its registry's collect())."""
    models: dict[str, ModelCounts] = {}
    versions: dict[tuple[str, str], dict[str, float]] = {}

    def of(model: str) -> ModelCounts:
        counts = models.get(model)
        if counts is None:
            counts = models[model] = ModelCounts()
        return counts

    for family in metrics.registry.collect():
        for sample in family.samples:
            labels, value = sample.labels, float(sample.value)
            model = labels.get("model")
            if model is None:
                continue
            name = sample.name
            if name == "ferry_requests_total":
                status = labels.get("status", "")
                counts = of(model)
                kind = "ok" if status in _OK else "refused" if status in _REFUSED else "errors"
                setattr(counts, kind, getattr(counts, kind) + value)
                per = versions.setdefault((model, labels.get("version", UNKNOWN)),
                                          {"ok": 0.0, "refused": 0.0, "errors": 0.0})
                per[kind] += value
            elif name == "ferry_request_duration_seconds_bucket":
                _merge(of(model).latency, float(labels["le"]), value)
            elif name == "ferry_stage_duration_seconds_bucket":
                stage = labels.get("stage", "")
                _merge(of(model).stages.setdefault(stage, {}), float(labels["le"]), value)
            elif name == "ferry_batch_size_bucket":
                _merge(of(model).batch, float(labels["le"]), value)
            elif name == "ferry_queue_depth":
                of(model).queue_depth += value
            elif name == "ferry_inflight_requests":
                of(model).inflight += value
    return Reading(now(), models, versions)


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram (upper bound -> count), None when empty.

    Linear within the bucket that holds it, from the previous bound (0 for the first); a
    quantile in the ``+Inf`` bucket is the largest finite bound.
    """
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def _delta(now: Buckets, before: Buckets | None) -> Buckets:
    before = before or {}
    return {bound: max(0.0, count - before.get(bound, 0.0)) for bound, count in now.items()}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 4)


def _batch_sizes(window: Buckets) -> dict[str, float]:
    """Runtime calls in the window by batch size bucket (``"<=8"``), from cumulative counts."""
    sizes: dict[str, float] = {}
    below = 0.0
    for bound in sorted(window):
        count = window[bound] - below
        below = window[bound]
        if count > 0:
            sizes["+Inf" if math.isinf(bound) else f"<={int(bound)}"] = count
    return sizes


def _model_window(now: ModelCounts, before: ModelCounts | None, seconds: float
                  ) -> dict[str, Any]:
    prev = before or ModelCounts()
    latency = _delta(now.latency, prev.latency)
    stages: dict[str, Any] = {}
    for stage in STAGES:
        if stage in now.stages:
            window = _delta(now.stages[stage], prev.stages.get(stage))
            stages[stage] = {"p50_ms": _ms(quantile(0.5, window)),
                             "p99_ms": _ms(quantile(0.99, window))}
    ok, refused, errors = (now.ok - prev.ok, now.refused - prev.refused,
                           now.errors - prev.errors)
    return {
        "requests_total": now.ok + now.refused + now.errors,
        "refused_total": now.refused,
        "errors_total": now.errors,
        "rps": round((ok + refused + errors) / seconds, 3),
        "ok_per_s": round(ok / seconds, 3),
        "refused_per_s": round(refused / seconds, 3),
        "errors_per_s": round(errors / seconds, 3),
        "p50_ms": _ms(quantile(0.5, latency)),
        "p99_ms": _ms(quantile(0.99, latency)),
        "stages": stages,
        "batch_sizes": _batch_sizes(_delta(now.batch, prev.batch)),
        "queue_depth": now.queue_depth,
        "inflight": now.inflight,
    }


def _combined(reading: Reading) -> ModelCounts:
    """Every model's counts added up: the server's totals and its overall latency."""
    total = ModelCounts()
    for counts in reading.models.values():
        total.ok += counts.ok
        total.refused += counts.refused
        total.errors += counts.errors
        total.queue_depth += counts.queue_depth
        total.inflight += counts.inflight
        for bound, count in counts.latency.items():
            _merge(total.latency, bound, count)
    return total


class LiveView:
    """The live figures of one server, read from its metrics when asked (see the module).

    Args:
        metrics: the engine's metrics.
        now: the clock (monotonic seconds).
    """

    def __init__(self, metrics: Metrics, now: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self._now = now
        self._last: Reading | None = None
        self._answer: dict[str, Any] | None = None

    def figures(self, served: Iterable[str]) -> dict[str, Any]:
        """The figures of the last window (at least :data:`MIN_INTERVAL` long).

        ``served`` names the models served now: they are listed even before their first
        request; requests for names the server does not serve are shown under
        ``"(other)"``.
        """
        now = self._now()
        if self._answer is not None and self._last is not None \
                and now - self._last.at < MIN_INTERVAL:
            return self._answer
        reading = read_metrics(self.metrics, self._now)
        before, self._last = self._last, reading
        seconds = max(reading.at - before.at, 1e-9) if before is not None else None
        names = sorted(set(served) | set(reading.models))
        models: dict[str, Any] = {}
        for name in names:
            counts = reading.models.get(name, ModelCounts())
            previous = before.models.get(name) if before is not None else None
            window = _model_window(counts, previous if before is not None else counts,
                                   seconds or 1.0)
            models[name if name != UNKNOWN else "(other)"] = window
        everyone = _combined(reading)
        window = _model_window(everyone, _combined(before) if before is not None else everyone,
                               seconds or 1.0)
        self._answer = {
            "interval_s": None if seconds is None else round(seconds, 3),
            "time": time.time(),
            "models": models,
            "total": {key: window[key] for key in (
                "rps", "refused_per_s", "errors_per_s", "requests_total", "refused_total",
                "errors_total", "p50_ms", "p99_ms", "queue_depth", "inflight")},
        }
        return self._answer
