"""One served model version: its runtime instances, its batcher, its thread pool, its drain.

A :class:`ServedVersion` is what a request resolves to. The request enters (``inflight``
goes up), waits for its batch through the :class:`~ferry.engine.batching.Batcher`, and
leaves; retiring a version (hot swap, unload, stop) waits for ``inflight`` to reach zero
before closing the runtimes, so a swap never fails a request that was already admitted.

Where the computation runs:

* normally on a thread of the version's own pool, one thread per runtime instance: ONNX
  Runtime releases the GIL, so the event loop keeps parsing requests meanwhile;
* *inline* on the event loop when a call is cheaper than the hand-off to a thread
  (``ModelConfig.inline_below_ms``, compared with the warm-up's measured time per row).
  A thread hand-off and the wake-up back cost tens of microseconds; the seed network
  computes a row in about five, so for it the hand-off would dominate the whole request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ferry.engine.batching import Batcher, Pending
from ferry.engine.config import ModelConfig
from ferry.engine.inflight import InFlight
from ferry.errors import (
    DeadlineExceededError,
    FerryError,
    InputError,
    InternalError,
    UnavailableError,
)
from ferry.observability.metrics import Metrics
from ferry.repository import Manifest
from ferry.runtimes import Arrays, Runtime, usable_cpus

__all__ = ["ServedVersion", "warmup_inputs"]

log = logging.getLogger("ferry.engine")

_WARMUP_RUNS = 5
#: How many batches of one request in a row end the batching mode of a cheap model (infer()).
_LONE_BATCHES = 32


def warmup_inputs(manifest: Manifest, rows: int = 1) -> Arrays:
    """``rows`` rows of zeros (empty strings for BYTES) per input; other variable dims 1."""
    arrays: Arrays = {}
    batch = manifest.signature.batch_axis
    for spec in manifest.signature.inputs:
        dims = [1 if d == -1 else d for d in spec.shape]
        if batch:
            dims[0] = rows
        shape = tuple(dims)
        if spec.datatype == "BYTES":
            arrays[spec.name] = np.full(shape, b"", dtype=object)
        else:
            arrays[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return arrays


def _timed(runtime: Runtime, inputs: Arrays) -> float:
    start = time.perf_counter()
    runtime.predict(inputs)
    return time.perf_counter() - start


class ServedVersion(InFlight):
    """A loaded, warmed version of a model that requests run on.

    Create it off the event loop (:meth:`warm` runs the model), then :meth:`attach` it to
    the loop that will serve it.
    """

    def __init__(self, manifest: Manifest, runtimes: Sequence[Runtime], config: ModelConfig,
                 metrics: Metrics) -> None:
        super().__init__()
        self.manifest = manifest
        self.name = manifest.name
        self.version = manifest.version
        self.label = str(manifest.version)
        self.signature = manifest.signature
        self.config = config
        self.runtimes = list(runtimes)
        self.batchable = (self.signature.batch_axis and config.batching.enabled
                          and all(r.supports_batching for r in self.runtimes))
        self.load_seconds = 0.0
        self.fixed_seconds = 0.0  # warm-up's cost model of one call: fixed + per row
        self.row_seconds = 0.0
        self._metrics = metrics
        self._model_metrics = metrics.for_model(self.name)
        self._input_names = tuple(self.signature.input_names)
        self._output_names = tuple(self.signature.output_names)
        #: Output name -> V2 datatype, for the engine's answers.
        self.output_types = {s.name: s.datatype for s in self.signature.outputs}
        self._inline_budget = config.inline_below_ms / 1000.0 if len(self.runtimes) == 1 else 0.0
        # Whether a request already ran inline in this loop turn, and how many more lone
        # batches keep a cheap model in batching mode (see infer()).
        self._inline_this_turn = False
        self._batching_left = 0
        # On one core a freed instance waits for the answered clients (see _complete).
        self._gather = usable_cpus() == 1
        self._executor = ThreadPoolExecutor(
            max_workers=len(self.runtimes), thread_name_prefix=f"ferry-{self.name}-{self.label}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batcher: Batcher | None = None

    # ------------------------------------------------------------------ lifecycle

    def warm(self) -> None:
        """Run every instance on zero rows (blocking) and measure what a call costs.

        The cost model ``fixed + per_row * rows`` comes from the medians of one-row and
        eight-row calls; it decides which batches are cheap enough to run inline.
        """
        if not self.config.warmup:
            return
        one = warmup_inputs(self.manifest, 1)
        eight = warmup_inputs(self.manifest, 8) if self.batchable else None
        t1: list[float] = []
        t8: list[float] = []
        for runtime in self.runtimes:
            for _ in range(_WARMUP_RUNS):
                try:
                    t1.append(_timed(runtime, one))
                    if eight is not None:
                        t8.append(_timed(runtime, eight))
                except InputError as exc:  # zeros may be invalid values for this model
                    log.info("warm-up of %s:%s stopped: %s", self.name, self.label, exc)
                    return
        one_row = statistics.median(t1)
        per_row = max(0.0, (statistics.median(t8) - one_row) / 7) if t8 else one_row
        self.fixed_seconds = max(0.0, one_row - per_row)
        self.row_seconds = per_row

    def estimate(self, rows: int) -> float:
        """Seconds one call of ``rows`` rows should take (from the warm-up); inf if unknown."""
        if not self.row_seconds and not self.fixed_seconds:
            return float("inf")
        return self.fixed_seconds + self.row_seconds * rows

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the serving event loop and start admitting requests."""
        self._loop = loop
        self._batcher = Batcher(
            instances=len(self.runtimes), config=self.config.batching,
            batchable=self.batchable, max_queue=self.config.max_queue,
            max_waiting=self.config.max_waiting,
            max_wait=self.config.max_wait_ms / 1000.0,
            execute=self._execute, clock=time.monotonic, call_later=loop.call_later,
            metrics=self._model_metrics, name=self.name, call_soon=loop.call_soon,
        )
        self._metrics.model_loaded(self.name, self.label, self.load_seconds)

    async def retire(self, timeout: float) -> None:
        """Stop admitting, wait up to ``timeout`` s for in-flight requests, close runtimes."""
        await self._drain(timeout)
        if self._batcher is not None:
            self._batcher.fail_queued(UnavailableError(
                f"model {self.name!r} version {self.label} was unloaded", retry_after=0.1))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.close)

    def close(self) -> None:
        """Shut the thread pool (after running work) and close every runtime (blocking)."""
        self._executor.shutdown(wait=True)
        for runtime in self.runtimes:
            runtime.close()

    # ------------------------------------------------------------------ requests

    @property
    def queued(self) -> int:
        """Requests waiting for an instance."""
        return self._batcher.queued if self._batcher is not None else 0

    async def infer(self, arrays: Arrays, outputs: tuple[str, ...] | None,
                    deadline: float | None) -> Arrays:
        """Run validated inputs through the batcher and return the requested outputs.

        Raises:
            RateLimitedError: the queue is full. DeadlineExceededError: too late.
            InputError: the model rejected the values. UnavailableError: retired meanwhile.
        """
        assert self._loop is not None and self._batcher is not None, "attach() first"
        if self.batchable:
            names = self._input_names
            first = arrays[names[0]]
            rows = int(first.shape[0])
            key: object = (first.shape[1:] if len(names) == 1
                           else tuple(arrays[n].shape[1:] for n in names))
        else:
            rows, key = 1, None
        if (self._inline_budget and self._batcher.idle
                and self.estimate(rows) <= self._inline_budget):
            # A cheap model runs a lone request right here. When a second request comes in
            # the same loop turn, requests are arriving together (many connections): from
            # then on they go through the batcher, which gathers those of one turn into one
            # call, until a run of lone batches shows the crowd has gone.
            if self._inline_this_turn:
                self._batching_left = _LONE_BATCHES
            elif not self._batching_left:
                self._inline_this_turn = True
                self._loop.call_soon(self._next_turn)
                return self._run_now(arrays, outputs, rows, deadline)
        future: asyncio.Future[Arrays] = self._loop.create_future()
        item = Pending(arrays, outputs, rows, key, deadline, future)
        self.inflight += 1
        self._model_metrics.inflight.inc()
        try:
            self._batcher.submit(item)
            return await future
        finally:
            self._model_metrics.inflight.dec()
            self._left()

    def _next_turn(self) -> None:
        self._inline_this_turn = False

    def _run_now(self, arrays: Arrays, outputs: tuple[str, ...] | None, rows: int,
                 deadline: float | None) -> Arrays:
        """The idle, cheap case: compute right here, with no queue entry and no future.

        Equivalent to a batch of one that the batcher would start at once (an idle model
        runs a request immediately), minus the bookkeeping that costs more than the model.
        """
        if deadline is not None and deadline <= time.monotonic():
            raise DeadlineExceededError(
                f"model {self.name!r}: the request's deadline passed before it was admitted")
        metrics = self._model_metrics
        metrics.queue.observe(0.0)
        metrics.batch_size.observe(rows)
        start = time.perf_counter()
        try:
            result = self.runtimes[0].predict(arrays, outputs)
        except FerryError:
            raise
        except Exception as exc:
            log.error("runtime failure in %s:%s", self.name, self.label, exc_info=exc)
            raise InternalError(f"model {self.name!r} version {self.label} failed: "
                                f"{type(exc).__name__}: {exc}") from None
        finally:
            metrics.compute.observe(time.perf_counter() - start)
        return self._pick(result, outputs)

    # ------------------------------------------------------------------ batches

    def _execute(self, slot: int, batch: list[Pending]) -> None:
        """Start ``batch`` on instance ``slot`` (called by the batcher on the loop)."""
        rows = sum(item.rows for item in batch)
        if self._inline_budget and self.estimate(rows) <= self._inline_budget:
            result, seconds = self._run(slot, batch)
            # Free the instance on the next loop turn, not from inside the batcher's own
            # call: requests that arrive meanwhile gather into the next batch, and a long
            # queue never turns into deep recursion.
            self._complete(slot, batch, result, seconds, finish_later=True)
            return
        job = self._executor.submit(self._run, slot, batch)
        loop = self._loop
        assert loop is not None

        def done(job: Future[tuple[Any, float]]) -> None:
            # RuntimeError: the loop closed under us (shutdown), nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._complete_job, slot, batch, job)

        job.add_done_callback(done)

    def _complete_job(self, slot: int, batch: list[Pending],
                      job: Future[tuple[Any, float]]) -> None:
        try:
            result, seconds = job.result()
        except BaseException as exc:
            result, seconds = exc, 0.0
        self._complete(slot, batch, result, seconds)

    def _run(self, slot: int, batch: list[Pending]) -> tuple[Any, float]:
        """Compute one batch on instance ``slot`` (on its thread, or inline).

        Returns the results per request (a list) or the exception that ended the batch,
        and the seconds the runtime took.
        """
        runtime = self.runtimes[slot]
        start = time.perf_counter()
        try:
            if len(batch) == 1:
                item = batch[0]
                outputs = runtime.predict(item.arrays, item.outputs)
                return [self._pick(outputs, item.outputs)], time.perf_counter() - start
            names = self._union(batch)
            inputs = {n: np.concatenate([item.arrays[n] for item in batch])
                      for n in self._input_names}
            try:
                outputs = runtime.predict(inputs, names)
            except InputError:
                # One request's values broke the whole batch: run each alone, so that
                # only the culprit gets the error.
                return [self._alone(runtime, item) for item in batch], time.perf_counter() - start
            return self._split(batch, outputs), time.perf_counter() - start
        except BaseException as exc:
            return exc, time.perf_counter() - start

    def _alone(self, runtime: Runtime, item: Pending) -> Arrays | BaseException:
        try:
            return self._pick(runtime.predict(item.arrays, item.outputs), item.outputs)
        except FerryError as exc:
            return exc

    def _union(self, batch: list[Pending]) -> tuple[str, ...] | None:
        wanted: set[str] = set()
        for item in batch:
            if item.outputs is None:
                return None
            wanted.update(item.outputs)
        return tuple(n for n in self._output_names if n in wanted)

    def _pick(self, outputs: Arrays, names: tuple[str, ...] | None) -> Arrays:
        if names is None:
            return outputs
        return {n: outputs[n] for n in names}

    def _split(self, batch: list[Pending], outputs: Arrays) -> list[Arrays | BaseException]:
        total = sum(item.rows for item in batch)
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != total:
                error = InternalError(
                    f"model {self.name!r} output {name!r} has shape {list(array.shape)} for a "
                    f"batch of {total} rows; set batching.enabled = false for this model")
                return [error] * len(batch)
        results: list[Arrays | BaseException] = []
        offset = 0
        for item in batch:
            end = offset + item.rows
            names = item.outputs if item.outputs is not None else tuple(outputs)
            results.append({n: outputs[n][offset:end] for n in names})
            offset = end
        return results

    def _complete(self, slot: int, batch: list[Pending], result: Any, seconds: float,
                  *, finish_later: bool = False) -> None:
        """Hand each request its answer (on the loop) and free the instance."""
        self._model_metrics.compute.observe(seconds)
        if self._batching_left:
            self._batching_left = _LONE_BATCHES if len(batch) > 1 else self._batching_left - 1
        if isinstance(result, BaseException):
            error = result if isinstance(result, FerryError) else InternalError(
                f"model {self.name!r} version {self.label} failed: "
                f"{type(result).__name__}: {result}")
            if not isinstance(result, FerryError):
                log.error("runtime failure in %s:%s", self.name, self.label, exc_info=result)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
        else:
            for item, answer in zip(batch, result, strict=True):
                if item.future.done():
                    continue
                if isinstance(answer, BaseException):
                    item.future.set_exception(answer)
                else:
                    item.future.set_result(answer)
        assert self._batcher is not None and self._loop is not None
        if finish_later:
            self._loop.call_soon(self._batcher.finished, slot, seconds)
        elif self._gather and self._batcher.queued:
            # Requests wait: free the instance two loop turns from now. The next turn writes
            # the answers just computed; the one after begins with a read, in which the
            # clients just answered send their next requests, so they join the batch that
            # starts then. Freed at once, it would start on only what waits now: under a
            # steady load the clients split into two halves that alternate, each batch half
            # the size it could be (W2 at 64 connections: 32 rows, ~6.6k req/s; gathered:
            # ~56 rows, ~7.4k). On one core the loop and the compute thread take turns
            # anyway, so the instance idles while the loop works, not while the core does;
            # with several cores it would idle beside them, so it starts at once there.
            loop = self._loop
            loop.call_soon(loop.call_soon, self._batcher.finished, slot, seconds)
        else:
            self._batcher.finished(slot, seconds)
