"""Dynamic batching: which waiting requests run together on a model instance, and when.

The rule (docs/serving.md): **an idle model runs a request at once**; only while its instances
are busy do requests wait, and then everything that gathered meanwhile (any mix of batch
sizes, up to ``max_batch_size`` rows) runs as one call when an instance frees up. So batching
never adds delay to a lone request, and under load one runtime call serves many requests.

"At once" means within the current turn of the event loop: when the engine passes
``call_soon``, an idle model's first request is started by a callback queued behind the
callbacks already ready to run, not synchronously. No timer is involved, so a lone request
waits microseconds; but when many clients' requests became readable together (as they do
right after a batch is answered), they all join that first batch instead of the first one
running alone and the rest waiting for it: under load the runtime alternated between a
batch of one and a batch of the rest, which halved a compute-heavy model's throughput.

``max_queue_delay_ms`` only matters with several instances: while some instance is busy, a
free one may wait that long (from the oldest request's arrival) for a fuller batch instead of
running a nearly empty one. An idle model never waits.

The :class:`Batcher` is plain synchronous logic driven by callbacks: a clock, a timer
(``call_later``) and ``execute(slot, batch)``, which starts a batch on instance ``slot`` and
later reports back through :meth:`Batcher.finished`. The engine plugs in the event loop and
a thread pool; the unit tests plug in a fake clock and record the batches, so the timing
rules are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ferry.engine.config import BatchingConfig
from ferry.errors import DeadlineExceededError, RateLimitedError
from ferry.observability.metrics import ModelMetrics

__all__ = ["Batcher", "Pending", "TimerHandle"]


class TimerHandle(Protocol):
    """What ``call_later`` returns: something that can be cancelled (asyncio's handles)."""

    def cancel(self) -> None:
        """Cancel the timer if it has not fired yet."""


class Pending:
    """One admitted request waiting for, or running on, a model instance.

    Attributes:
        arrays: validated inputs by name.
        outputs: requested output names, or ``None`` for all.
        rows: size of the batch axis (1 for a model without one).
        key: requests run together only when their keys match (same trailing shapes).
        deadline: ``time.monotonic()`` after which the answer is no longer wanted.
        future: resolved with the outputs (a dict of arrays) or an exception.
    """

    __slots__ = (
        "arrays",
        "dead",
        "deadline",
        "enqueued",
        "future",
        "key",
        "outputs",
        "rows",
        "timer",
    )

    def __init__(self, arrays: dict[str, np.ndarray[Any, Any]], outputs: tuple[str, ...] | None,
                 rows: int, key: object, deadline: float | None,
                 future: asyncio.Future[Any]) -> None:
        self.arrays = arrays
        self.outputs = outputs
        self.rows = rows
        self.key = key
        self.deadline = deadline
        self.future = future
        self.enqueued = 0.0
        self.timer: TimerHandle | None = None
        self.dead = False  # expired while queued: already answered, skip it


class Batcher:
    """Admission and dynamic batching for one model version.

    Args:
        instances: number of runtime instances (slots) that can each run one batch.
        config: the model's batching settings.
        batchable: whether requests may be concatenated (the signature has a batch axis);
            when not, each request runs alone.
        max_queue: how many requests may wait for an instance.
        max_waiting: how many more may wait in line for room past ``max_queue`` (the
            back-pressure of a server whose clients resend at once); one more is refused
            with :class:`~ferry.errors.RateLimitedError` at once. 0: refuse past max_queue.
        max_wait: seconds a request admitted past ``max_queue`` may wait before it starts;
            then it is refused (429) instead.
        execute: starts ``batch`` on instance ``slot``; must call :meth:`finished` later.
        clock: monotonic seconds (``time.monotonic`` or a fake).
        call_later: schedules a callback after a delay and returns a cancellable handle.
        metrics: where to report queue depth, queue wait and batch sizes (optional).
        name: the model, for messages.
    """

    def __init__(self, *, instances: int, config: BatchingConfig, batchable: bool,
                 max_queue: int, execute: Callable[[int, list[Pending]], None],
                 max_waiting: int = 0, max_wait: float = 2.0,
                 clock: Callable[[], float],
                 call_later: Callable[[float, Callable[[], None]], TimerHandle],
                 metrics: ModelMetrics | None = None, name: str = "model",
                 call_soon: Callable[[Callable[[], None]], object] | None = None) -> None:
        self._instances = instances
        self._free = list(range(instances - 1, -1, -1))  # pop() hands out slot 0 first
        self._batchable = batchable and config.enabled
        self._max_rows = config.max_batch_size if self._batchable else 1
        self._delay = config.max_queue_delay_ms / 1000.0 if self._batchable else 0.0
        self._preferred = sorted(config.preferred_batch_sizes) if self._batchable else []
        self._target = self._preferred[-1] if self._preferred else self._max_rows
        self._max_queue = max_queue
        self._max_waiting = max_waiting
        self._max_wait = max_wait
        self._execute = execute
        self._clock = clock
        self._call_later = call_later
        self._metrics = metrics
        self._name = name
        self._queue: deque[Pending] = deque()
        self._count = 0  # live requests in the queue
        self._rows = 0  # their rows
        self._timer: TimerHandle | None = None
        self._batch_seconds = 0.0  # moving average of one runtime call, for Retry-After
        self._call_soon = call_soon if self._batchable else None
        self._kick_pending = False  # an idle start is queued behind this loop turn

    # ------------------------------------------------------------------ state

    @property
    def queued(self) -> int:
        """Requests waiting for an instance."""
        return self._count

    @property
    def idle(self) -> bool:
        """No instance is running a batch and nothing waits."""
        return not self._count and len(self._free) == self._instances

    # ------------------------------------------------------------------ events

    def submit(self, item: Pending) -> None:
        """Admit a request: run it now if the model is idle, else queue it.

        Raises:
            DeadlineExceededError: its deadline has already passed.
            RateLimitedError: the queue is full.
        """
        now = self._clock()
        if item.deadline is not None and item.deadline <= now:
            raise DeadlineExceededError(
                f"model {self._name!r}: the request's deadline passed before it was admitted"
            )
        defer = False
        if self._free and not self._count and (
            not self._delay or len(self._free) == self._instances
        ):
            if self._call_soon is None:
                self._start(self._free.pop(), [item], now)
                return
            defer = True
        expires = item.deadline
        if self._count >= self._max_queue:
            if self._count >= self._max_queue + self._max_waiting:
                raise RateLimitedError(
                    f"model {self._name!r} is overloaded: {self._count} requests are waiting "
                    f"(the limit is {self._max_queue + self._max_waiting})",
                    retry_after=self.retry_after(),
                    hint="retry later, or raise max_queue / max_waiting / instances in the "
                    "model's config.toml",
                )
            # The queue is full: wait in line for room (back-pressure) for max_wait at most.
            limit = now + self._max_wait
            if expires is None or limit < expires:
                expires = limit
        item.enqueued = now
        self._queue.append(item)
        self._count += 1
        self._rows += item.rows
        if expires is not None:
            item.timer = self._call_later(expires - now, lambda: self._expire(item))
        if defer and self._call_soon is not None:
            self._kick_pending = True
            self._call_soon(self._kick)
        elif not self._kick_pending:
            self._pump()
        self._report_depth()

    def finished(self, slot: int, seconds: float) -> None:
        """An instance finished its batch in ``seconds``: give it the next one."""
        self._batch_seconds = seconds if not self._batch_seconds else (
            0.8 * self._batch_seconds + 0.2 * seconds
        )
        self._free.append(slot)
        if self._count:
            self._pump()
            self._report_depth()

    def retry_after(self) -> float:
        """Seconds until the queue has probably drained: a client's ``Retry-After``."""
        batches = math.ceil(max(self._rows, 1) / self._max_rows) / self._instances
        return max(0.001, batches * self._batch_seconds)

    def fail_queued(self, error: Exception) -> None:
        """Answer every waiting request with ``error`` (the model is going away)."""
        while self._queue:
            item = self._queue.popleft()
            if not item.dead:
                self._settle(item, error)
        self._count = self._rows = 0
        self._report_depth()

    # ------------------------------------------------------------------ internals

    def _pump(self) -> None:
        """Start batches on free instances while there is work worth starting."""
        while self._free and self._count:
            now = self._clock()
            if self._delay and len(self._free) < self._instances and self._rows < self._target:
                ready_at = self._oldest().enqueued + self._delay
                if now < ready_at:
                    self._arm(ready_at - now)
                    return
            batch = self._take(now)
            if batch:
                self._start(self._free.pop(), batch, now)

    def _kick(self) -> None:
        """The deferred idle start: run everything that joined during this loop turn."""
        self._kick_pending = False
        self._pump()
        self._report_depth()

    def _oldest(self) -> Pending:
        while self._queue[0].dead:
            self._queue.popleft()
        return self._queue[0]

    def _arm(self, delay: float) -> None:
        if self._timer is None:
            self._timer = self._call_later(delay, self._wake)

    def _wake(self) -> None:
        self._timer = None
        self._pump()
        self._report_depth()

    def _take(self, now: float) -> list[Pending]:
        """Remove the next batch from the queue: FIFO, same key, up to the row limit."""
        batch: list[Pending] = []
        skipped: list[Pending] = []
        rows = 0
        key: object = None
        queue = self._queue
        while queue and rows < self._max_rows:
            item = queue.popleft()
            if item.dead:
                continue
            if batch and (item.key != key or rows + item.rows > self._max_rows):
                skipped.append(item)
                continue
            self._count -= 1
            self._rows -= item.rows
            if item.timer is not None:
                item.timer.cancel()
                item.timer = None
            if item.future.done():  # the caller went away
                continue
            if item.deadline is not None and item.deadline <= now:
                self._settle(item, DeadlineExceededError(
                    f"model {self._name!r}: the request's deadline passed while it waited "
                    "for an instance"))
                continue
            if not batch:
                key = item.key
            batch.append(item)
            rows += item.rows
        if self._preferred and rows not in self._preferred and len(batch) > 1:
            batch = self._cut_to_preferred(batch)
        queue.extendleft(reversed(skipped))
        return batch

    def _cut_to_preferred(self, batch: list[Pending]) -> list[Pending]:
        """Cut a batch to the largest preferred size a prefix of it fills exactly."""
        total, sizes = 0, {}
        for i, item in enumerate(batch):
            total += item.rows
            sizes[total] = i + 1
        fits = [p for p in self._preferred if p in sizes]
        if not fits:
            return batch
        keep = sizes[fits[-1]]
        for item in reversed(batch[keep:]):  # back to the front of the queue, in order
            self._queue.appendleft(item)
            self._count += 1
            self._rows += item.rows
        return batch[:keep]

    def _start(self, slot: int, batch: list[Pending], now: float) -> None:
        metrics = self._metrics
        if metrics is not None:
            metrics.batch_size.observe(sum(item.rows for item in batch))
            for item in batch:
                metrics.queue.observe(now - item.enqueued if item.enqueued else 0.0)
        self._execute(slot, batch)

    def _expire(self, item: Pending) -> None:
        """A queued request's deadline (or wait bound) passed: answer it now, forget it."""
        if item.dead or item.timer is None:
            return
        item.dead = True
        self._count -= 1
        self._rows -= item.rows
        error: Exception
        if item.deadline is not None and item.deadline <= self._clock() + 1e-6:
            error = DeadlineExceededError(
                f"model {self._name!r}: the request's deadline passed while it waited for an "
                "instance")
        else:
            error = RateLimitedError(
                f"model {self._name!r} is overloaded: the request waited "
                f"{self._max_wait * 1000:.0f} ms in line for room in its queue "
                f"(max_queue {self._max_queue})",
                retry_after=self.retry_after(),
                hint="retry later, or raise max_wait_ms / instances in the model's config.toml")
        self._settle(item, error)
        self._report_depth()

    @staticmethod
    def _settle(item: Pending, error: Exception) -> None:
        if not item.future.done():
            item.future.set_exception(error)

    def _report_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(self._count)
