"""The batcher's timing rules with a fake clock: nothing sleeps, every decision is checked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from ferry.engine.batching import Batcher, Pending
from ferry.engine.config import BatchingConfig
from ferry.errors import DeadlineExceededError, RateLimitedError


class FakeClock:
    """A monotonic clock the test moves by hand, with timers it fires when due."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], None], FakeTimer]] = []

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer()
        self.timers.append((self.now + delay, callback, timer))
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now and not t[2].cancelled]
        self.timers = [t for t in self.timers if t not in due]
        for _, callback, _ in sorted(due, key=lambda t: t[0]):
            callback()


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Harness:
    def __init__(self, *, instances: int = 1, max_queue: int = 100, batchable: bool = True,
                 loop_turns: bool = False, **batching: object) -> None:
        self.clock = FakeClock()
        self.soon: list[Callable[[], None]] = []  # callbacks queued behind this loop turn
        self.loop = asyncio.new_event_loop()
        self.started: list[tuple[int, list[int]]] = []  # (slot, rows of each request)
        self.batcher = Batcher(
            instances=instances, config=BatchingConfig(**batching), batchable=batchable,
            max_queue=max_queue, execute=self._execute, clock=self.clock,
            call_later=self.clock.call_later, name="m",
            call_soon=self.soon.append if loop_turns else None,
        )

    def end_turn(self) -> None:
        """The event loop finishes its turn and runs what was queued with call_soon."""
        soon, self.soon = self.soon, []
        for callback in soon:
            callback()

    def _execute(self, slot: int, batch: list[Pending]) -> None:
        self.started.append((slot, [item.rows for item in batch]))
        for item in batch:
            item.future.set_result({})

    def submit(self, rows: int = 1, key: object = (4,), deadline: float | None = None
               ) -> Pending:
        future = self.loop.create_future()
        item = Pending({"x": np.zeros((rows, 4))}, None, rows, key, deadline, future)
        self.batcher.submit(item)
        return item

    def close(self) -> None:
        self.loop.close()


@pytest.fixture
def make() -> Callable[..., Harness]:
    made: list[Harness] = []

    def factory(**kwargs: object) -> Harness:
        h = Harness(**kwargs)  # type: ignore[arg-type]
        made.append(h)
        return h

    yield factory
    for h in made:
        h.close()


def test_an_idle_model_runs_a_lone_request_at_once(make):
    h = make(max_batch_size=8, max_queue_delay_ms=5.0)
    h.submit()
    assert h.started == [(0, [1])]
    assert h.clock.timers == []  # no waiting for company


def test_an_idle_start_waits_only_for_the_current_loop_turn(make):
    h = make(max_batch_size=8, loop_turns=True)
    h.submit()
    assert h.started == [] and h.clock.timers == []  # no timer: the end of this turn
    h.end_turn()
    assert h.started == [(0, [1])]


def test_requests_ready_in_the_same_loop_turn_join_the_idle_start(make):
    h = make(max_batch_size=8, loop_turns=True)
    for rows in (1, 2, 1):
        h.submit(rows)
    assert h.started == [] and len(h.soon) == 1  # one deferred start, not three
    h.end_turn()
    assert h.started == [(0, [1, 2, 1])]
    h.submit()  # arrives while the batch runs: waits for the instance, as always
    h.end_turn()
    assert len(h.started) == 1 and h.batcher.queued == 1
    h.batcher.finished(0, 0.001)
    assert h.started[1] == (0, [1])


def test_an_unbatched_model_is_never_deferred(make):
    h = make(max_batch_size=8, loop_turns=True, batchable=False)
    h.submit()
    assert h.started == [(0, [1])] and h.soon == []


def test_requests_gather_while_busy_and_run_together_when_it_frees(make):
    h = make(max_batch_size=8)
    h.submit()
    for rows in (1, 2, 3):
        h.submit(rows)
    assert len(h.started) == 1 and h.batcher.queued == 3
    h.batcher.finished(0, 0.001)
    assert h.started[1] == (0, [1, 2, 3])
    assert h.batcher.queued == 0


def test_a_batch_never_exceeds_max_batch_size(make):
    h = make(max_batch_size=4)
    h.submit()
    for rows in (3, 2, 1, 1):
        h.submit(rows)
    h.batcher.finished(0, 0.001)
    assert h.started[1] == (0, [3, 1])  # 2 does not fit after 3; 1 does; order kept otherwise
    h.batcher.finished(0, 0.001)
    assert h.started[2] == (0, [2, 1])


def test_a_request_larger_than_the_limit_runs_alone(make):
    h = make(max_batch_size=4)
    h.submit()
    h.submit(10)
    h.submit(1)
    h.batcher.finished(0, 0.001)
    assert h.started[1] == (0, [10])


def test_requests_with_different_trailing_shapes_are_not_mixed(make):
    h = make(max_batch_size=8)
    h.submit()
    h.submit(1, key=(4,))
    h.submit(1, key=(5,))
    h.submit(1, key=(4,))
    h.batcher.finished(0, 0.001)
    assert h.started[1] == (0, [1, 1])
    h.batcher.finished(0, 0.001)
    assert h.started[2] == (0, [1])


def test_a_model_without_batch_axis_runs_one_request_per_call(make):
    h = make(batchable=False, max_batch_size=8)
    h.submit()
    h.submit()
    h.submit()
    h.batcher.finished(0, 0.001)
    assert h.started[1] == (0, [1])


def test_a_full_queue_refuses_at_once_with_retry_after(make):
    h = make(max_queue=2)
    h.submit()
    h.submit()
    h.submit()
    with pytest.raises(RateLimitedError) as info:
        h.submit()
    assert "2 requests are waiting" in str(info.value)
    assert info.value.retry_after > 0


def test_queue_delay_only_applies_while_another_instance_is_busy(make):
    h = make(instances=2, max_batch_size=8, max_queue_delay_ms=10.0)
    h.submit()  # idle model: runs at once on slot 0
    assert h.started == [(0, [1])]
    h.submit()  # slot 1 free but slot 0 busy: wait up to 10 ms for company
    assert len(h.started) == 1
    h.submit(2)
    h.clock.advance(0.005)
    assert len(h.started) == 1
    h.clock.advance(0.006)
    assert h.started[1] == (1, [1, 2])


def test_preferred_batch_sizes_cut_a_gathered_batch(make):
    h = make(max_batch_size=8, preferred_batch_sizes=(2, 4))
    h.submit()
    for _ in range(5):
        h.submit()
    h.batcher.finished(0, 0.001)
    assert h.started[1] == (0, [1, 1, 1, 1])
    assert h.batcher.queued == 1


def test_a_queued_request_whose_deadline_passes_is_answered_with_an_error(make):
    h = make(max_batch_size=8)
    h.submit()
    late = h.submit(deadline=0.002)
    h.clock.advance(0.003)
    assert isinstance(late.future.exception(), DeadlineExceededError)
    h.batcher.finished(0, 0.001)
    assert len(h.started) == 1  # nothing left to run


def test_an_expired_deadline_is_refused_on_admission(make):
    h = make()
    h.clock.now = 5.0
    with pytest.raises(DeadlineExceededError):
        h.submit(deadline=4.0)
