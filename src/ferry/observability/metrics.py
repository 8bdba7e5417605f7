"""Prometheus metrics of the server: what a dashboard and an alert need, cheap per request.

Metric families (all prefixed ``ferry_``):

=================================  =========  ==============================================
name                               type       labels
=================================  =========  ==============================================
requests_total                     counter    model, version, protocol, status
request_duration_seconds           histogram  model, protocol (end to end, as the adapter saw)
stage_duration_seconds             histogram  model, stage (decode, queue, compute, encode)
batch_size                         histogram  model (rows per runtime call)
queue_depth                        gauge      model (requests waiting for an instance)
inflight_requests                  gauge      model (admitted and not yet answered)
model_load_seconds                 gauge      model, version (load + warm-up time)
breaker_state                      gauge      model, version (0 closed, 1 half-open, 2 open)
fallbacks_total                    counter    model (requests a fallback answered instead)
=================================  =========  ==============================================

Label values come only from what the server serves, never from what a client sent: the
engine tells :class:`Metrics` which models and versions it serves (:meth:`Metrics.served`),
and a request or stage reported for any other model or version is counted under
:data:`UNKNOWN` (``""``). A client naming 20,000 different models therefore adds one series,
not 20,000, and a scrape stays small (docs/serving.md, bounds on what clients make the
server remember).

Label children are bound once per label tuple and cached in a plain dict: prometheus-client's
``labels()`` takes a lock and builds a key on every call, which a hot path should not pay.
In one process the children are plain numbers (:class:`LeanHistogram` and friends), turned
into metric families only when ``/metrics`` is scraped.

With ``ferry serve --workers N`` each process counts on its own; when the environment variable
``PROMETHEUS_MULTIPROC_DIR`` names a directory (``ferry.server`` sets it for workers),
prometheus-client keeps the values in files there and :meth:`Metrics.render` sums the
processes, so a scrape of any worker reports the whole server.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

__all__ = ["STAGES", "UNKNOWN", "Metrics", "ModelMetrics"]

#: The stages of one request, in order: the adapters report decode and encode.
STAGES = ("decode", "queue", "compute", "encode")

#: The label value of a model or version the server does not serve (unknown, unloaded, or a
#: request that named none): the one series all such requests share.
UNKNOWN = ""

# Latency buckets from 50 µs to 10 s: a tiny model answers in well under a millisecond.
_LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


# ---------------------------------------------------------------------- lean metrics
#
# prometheus-client's children take a lock and, for a histogram, scan the buckets in a
# Python loop on every observation: about 1-2 µs each, and a request makes eight of them,
# which on one core was a tenth of the seed network's whole request. In one process every
# observation happens on the event loop's thread, so plain numbers suffice; they become
# metric families (prometheus-client's public custom-collector API) only when scraped.
# With --workers the values must reach prometheus-client's shared files, so there the
# regular prometheus-client metrics are used instead (see Metrics).


class LeanCounter:
    """A counter child: a plain number (single-threaded use)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount``."""
        self.value += amount


class LeanGauge(LeanCounter):
    """A gauge child: a counter that may also go down or be set (single-threaded use)."""

    __slots__ = ()

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount``."""
        self.value -= amount

    def set(self, value: float) -> None:
        """Set the value."""
        self.value = float(value)


class LeanHistogram:
    """A histogram child: per-bucket counts found by bisection, and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = (*bounds, float("inf"))
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose upper bound is >= it."""
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount


class _LeanFamily:
    """One metric family of lean children by label values; a metric family when scraped.

    Children may be created from another thread (a version loading in the executor binds its
    children), so a scrape iterates over a copy of the dict.
    """

    def __init__(self, kind: str, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float] = ()) -> None:
        self.kind = kind
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.buckets = tuple(buckets)
        self.children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str, **named: str) -> Any:
        """The child of these label values (created on first use), as prometheus-client's."""
        key = tuple(values) if values else tuple(named[n] for n in self.labelnames)
        child = self.children.get(key)
        if child is None:
            if self.kind == "histogram":
                child = LeanHistogram(self.buckets)
            elif self.kind == "counter":
                child = LeanCounter()
            else:
                child = LeanGauge()
            self.children[key] = child
        return child

    def collect(self) -> Metric:
        """The family's current values, for the exposition."""
        labels = self.labelnames
        if self.kind == "counter":
            counter = CounterMetricFamily(self.name, self.documentation, labels=labels)
            for key, child in list(self.children.items()):
                counter.add_metric(list(key), child.value)
            return counter
        if self.kind == "gauge":
            gauge = GaugeMetricFamily(self.name, self.documentation, labels=labels)
            for key, child in list(self.children.items()):
                gauge.add_metric(list(key), child.value)
            return gauge
        histogram = HistogramMetricFamily(self.name, self.documentation, labels=labels)
        for key, child in list(self.children.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(child.bounds, child.counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
            histogram.add_metric(list(key), buckets, child.sum)
        return histogram


class _LeanCollector:
    """The lean families, as a prometheus-client collector (registered once)."""

    def __init__(self, families: Sequence[_LeanFamily]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.collect()

    def describe(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.collect()


class ModelMetrics:
    """The metrics of one model, bound once so the engine's hot path only observes."""

    __slots__ = ("batch_size", "compute", "inflight", "queue", "queue_depth")

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.queue = metrics.stage_child("queue", model)
        self.compute = metrics.stage_child("compute", model)
        self.batch_size = metrics.batch_size.labels(model=model)
        self.queue_depth = metrics.queue_depth.labels(model=model)
        self.inflight = metrics.inflight.labels(model=model)


class Metrics:
    """The server's metrics; one instance per engine, with its own registry.

    Args:
        registry: where to register; a fresh private registry by default, so that several
            engines (in tests) do not collide.
        lean: keep the values in plain numbers, exposed by a collector when scraped (the
            default in one process); False uses prometheus-client's own metrics (the
            default when ``PROMETHEUS_MULTIPROC_DIR`` is set, i.e. under ``--workers``).
            Lean metrics must be observed from one thread: the event loop's.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 lean: bool | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        # Lean (plain numbers, see above) unless the values must be shared with workers.
        self.lean = not os.environ.get(_MULTIPROC_ENV) if lean is None else lean
        make = self._lean_family if self.lean else self._client_family
        self.requests = make(
            "counter", "ferry_requests", "Inference requests answered, by final status.",
            ["model", "version", "protocol", "status"],
        )
        self.request_seconds = make(
            "histogram", "ferry_request_duration_seconds",
            "End-to-end inference latency in the server.",
            ["model", "protocol"], buckets=_LATENCY_BUCKETS,
        )
        self.stage_seconds = make(
            "histogram", "ferry_stage_duration_seconds",
            "Latency of each stage of a request: decode, queue (waiting for an instance), "
            "compute (the runtime call, per batch), encode.",
            ["model", "stage"], buckets=_LATENCY_BUCKETS,
        )
        self.batch_size = make(
            "histogram", "ferry_batch_size", "Rows per runtime call (dynamic batching).",
            ["model"], buckets=_BATCH_BUCKETS,
        )
        self.queue_depth = make(
            "gauge", "ferry_queue_depth", "Requests waiting for a runtime instance.",
            ["model"], multiprocess_mode="livesum",
        )
        self.inflight = make(
            "gauge", "ferry_inflight_requests", "Requests admitted and not yet answered.",
            ["model"], multiprocess_mode="livesum",
        )
        self.load_seconds = make(
            "gauge", "ferry_model_load_seconds", "Time to load and warm up a model version.",
            ["model", "version"], multiprocess_mode="max",
        )
        # Only versions with a breaker have a series; with --workers the worst worker shows.
        self.breaker_state = make(
            "gauge", "ferry_breaker_state",
            "Circuit breaker of a served version: 0 closed, 1 half-open, 2 open.",
            ["model", "version"], multiprocess_mode="livemax",
        )
        self.fallbacks = make(
            "counter", "ferry_fallbacks",
            "Requests answered by a model's configured fallback instead of the version asked "
            "for (its breaker open or its queue full).",
            ["model"],
        )
        if self.lean:
            self.registry.register(_LeanCollector([
                self.requests, self.request_seconds, self.stage_seconds, self.batch_size,
                self.queue_depth, self.inflight, self.load_seconds, self.breaker_state,
                self.fallbacks]))
        self._request_children: dict[tuple[str, str, str, str], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._stage_children: dict[tuple[str, str], Any] = {}
        #: Model name -> the version labels served now (see served()); nothing else is a label.
        self._served: dict[str, frozenset[str]] = {}
        #: (model, version) of the breakers that have a ferry_breaker_state series.
        self._breakers: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ what is served

    def served(self, model: str, versions: Iterable[str]) -> None:
        """Declare the versions of ``model`` served now (none: the model is not served).

        The engine calls this whenever its table changes; from then on only these names
        and versions appear as label values of what the adapters report.
        """
        labels = frozenset(versions)
        before = self._served.get(model, frozenset())
        if labels:
            self._served[model] = labels
        else:
            self._served.pop(model, None)
        for gone in before - labels:  # a breaker of a version no longer served
            self.breaker_changed(model, gone, None)

    # ------------------------------------------------------------------ counting, scraping

    def request(self, *, model: str, version: str, protocol: str, status: str,
                seconds: float) -> None:
        """Count one answered request and observe its end-to-end latency.

        Args:
            model: the model name the client asked for; counted under :data:`UNKNOWN`
                unless the server serves it.
            version: the version that answered, or the one the client asked for ("" when
                none); counted under :data:`UNKNOWN` unless the model serves it.
            protocol: "rest" or "grpc".
            status: the HTTP status ("200", "429") or gRPC code name ("OK").
            seconds: from the first byte decoded to the last encoded.
        """
        # Map first, then look up: a client's string is never a key of the caches below.
        # (Inline rather than a call: this runs for every request.)
        versions = self._served.get(model)
        if versions is None:
            model = version = UNKNOWN
        elif version not in versions:
            version = UNKNOWN
        key = (model, version, protocol, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(*key)
        counter.inc()
        lkey = (model, protocol)
        hist = self._latency_children.get(lkey)
        if hist is None:
            hist = self._latency_children[lkey] = self.request_seconds.labels(*lkey)
        hist.observe(seconds)

    def stage(self, stage: str, *, model: str, seconds: float) -> None:
        """Observe the duration of one stage (``decode``, ``queue``, ``compute``, ``encode``).

        ``model`` is the name the client asked for (:data:`UNKNOWN` unless served).
        """
        label = model if model in self._served else UNKNOWN
        self.stage_child(stage, label).observe(seconds)

    def _lean_family(self, kind: str, name: str, documentation: str,
                     labelnames: Sequence[str], *, buckets: Sequence[float] = (),
                     multiprocess_mode: str = "") -> Any:
        return _LeanFamily(kind, name, documentation, labelnames, buckets)

    def _client_family(self, kind: str, name: str, documentation: str,
                       labelnames: Sequence[str], *, buckets: Sequence[float] = (),
                       multiprocess_mode: Any = "") -> Any:
        reg = self.registry
        if kind == "counter":
            return Counter(name, documentation, labelnames, registry=reg)
        if kind == "histogram":
            return Histogram(name, documentation, labelnames, buckets=buckets, registry=reg)
        return Gauge(name, documentation, labelnames, registry=reg,
                     multiprocess_mode=multiprocess_mode)

    def render(self) -> tuple[bytes, str]:
        """The exposition text for ``GET /metrics`` and its content type."""
        if os.environ.get(_MULTIPROC_ENV):
            registry = CollectorRegistry()
            _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # ------------------------------------------------------------------ engine side

    def stage_child(self, stage: str, model: str) -> Any:
        """The bound histogram child of one stage of one model (cached).

        For the engine, with the name of a model it loads; adapters report through
        :meth:`stage`, which maps names the server does not serve.
        """
        key = (model, stage)
        child = self._stage_children.get(key)
        if child is None:
            child = self._stage_children[key] = self.stage_seconds.labels(model, stage)
        return child

    def for_model(self, model: str) -> ModelMetrics:
        """The bound metrics of one model, for the engine's per-model queue and batcher."""
        return ModelMetrics(self, model)

    def model_loaded(self, model: str, version: str, seconds: float) -> None:
        """Record how long a version took to load and warm up."""
        self.load_seconds.labels(model, version).set(seconds)

    def breaker_changed(self, model: str, version: str, state: int | None) -> None:
        """Show the breaker state of a served version (None: it has no breaker any more).

        A version without a breaker has no series. prometheus-client cannot remove a
        series in its multi-process mode (``--workers``): there a breaker that is gone
        shows 0 (closed) until the worker restarts.
        """
        key = (model, version)
        if state is not None:
            self._breakers.add(key)
            self.breaker_state.labels(model, version).set(state)
            return
        if key not in self._breakers:
            return
        self._breakers.discard(key)
        if isinstance(self.breaker_state, _LeanFamily):
            self.breaker_state.children.pop(key, None)
        elif os.environ.get(_MULTIPROC_ENV):
            self.breaker_state.labels(model, version).set(0)
        else:
            self.breaker_state.remove(model, version)

    def fell_back(self, model: str) -> None:
        """Count one request of ``model`` (a served name) answered by its fallback."""
        self.fallbacks.labels(model).inc()
