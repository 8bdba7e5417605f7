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
=================================  =========  ==============================================

Label children are bound once per label tuple and cached in a plain dict: prometheus-client's
``labels()`` takes a lock and builds a key on every call, which a hot path should not pay.

With ``ferry serve --workers N`` each process counts on its own; when the environment variable
``PROMETHEUS_MULTIPROC_DIR`` names a directory (``ferry.server`` sets it for workers),
prometheus-client keeps the values in files there and :meth:`Metrics.render` sums the
processes, so a scrape of any worker reports the whole server.
"""

from __future__ import annotations

import os
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

__all__ = ["STAGES", "Metrics", "ModelMetrics"]

#: The stages of one request, in order: the adapters report decode and encode.
STAGES = ("decode", "queue", "compute", "encode")

# Latency buckets from 50 µs to 10 s: a tiny model answers in well under a millisecond.
_LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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
    """The server's metrics (Contract B); one instance per engine, with its own registry.

    Args:
        registry: where to register; a fresh private registry by default, so that several
            engines (in tests) do not collide.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "ferry_requests", "Inference requests answered, by final status.",
            ["model", "version", "protocol", "status"], registry=reg,
        )
        self.request_seconds = Histogram(
            "ferry_request_duration_seconds", "End-to-end inference latency in the server.",
            ["model", "protocol"], buckets=_LATENCY_BUCKETS, registry=reg,
        )
        self.stage_seconds = Histogram(
            "ferry_stage_duration_seconds",
            "Latency of each stage of a request: decode, queue (waiting for an instance), "
            "compute (the runtime call, per batch), encode.",
            ["model", "stage"], buckets=_LATENCY_BUCKETS, registry=reg,
        )
        self.batch_size = Histogram(
            "ferry_batch_size", "Rows per runtime call (dynamic batching).",
            ["model"], buckets=_BATCH_BUCKETS, registry=reg,
        )
        self.queue_depth = Gauge(
            "ferry_queue_depth", "Requests waiting for a runtime instance.",
            ["model"], registry=reg, multiprocess_mode="livesum",
        )
        self.inflight = Gauge(
            "ferry_inflight_requests", "Requests admitted and not yet answered.",
            ["model"], registry=reg, multiprocess_mode="livesum",
        )
        self.load_seconds = Gauge(
            "ferry_model_load_seconds", "Time to load and warm up a model version.",
            ["model", "version"], registry=reg, multiprocess_mode="max",
        )
        self._request_children: dict[tuple[str, str, str, str], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._stage_children: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ Contract B

    def request(self, *, model: str, version: str, protocol: str, status: str,
                seconds: float) -> None:
        """Count one answered request and observe its end-to-end latency.

        Args:
            model: the model name the client asked for.
            version: the version that answered ("" when none did).
            protocol: "rest" or "grpc".
            status: the HTTP status ("200", "429") or gRPC code name ("OK").
            seconds: from the first byte decoded to the last encoded.
        """
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
        """Observe the duration of one stage (``decode``, ``queue``, ``compute``, ``encode``)."""
        self.stage_child(stage, model).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text for ``GET /metrics`` and its content type."""
        if os.environ.get(_MULTIPROC_ENV):
            registry = CollectorRegistry()
            _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # ------------------------------------------------------------------ engine side

    def stage_child(self, stage: str, model: str) -> Any:
        """The bound histogram child of one stage of one model (cached)."""
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
