"""The circuit breaker's state machine, driven by a clock the test moves (no sleeping)."""

from __future__ import annotations

import pytest

from ferry.engine.breaker import Breaker, BreakerState


class Clock:
    """A clock the test sets by hand (the breaker takes any ``() -> float``)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _breaker(clock: Clock, **kwargs) -> tuple[Breaker, list[BreakerState]]:
    changes: list[BreakerState] = []
    settings = {"failures": 3, "window": 10.0, "cooldown": 5.0, "half_open_calls": 1,
                **kwargs}
    return Breaker(clock=clock, on_change=changes.append, **settings), changes


def _fail(breaker: Breaker, times: int = 1) -> None:
    for _ in range(times):
        ticket = breaker.admit()
        assert ticket is not None
        breaker.failed(ticket)


def test_it_opens_after_the_failures_within_the_window_and_refuses_meanwhile(clock):
    breaker, changes = _breaker(clock)
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED and breaker.admit() is not None
    clock.now += 1.0
    _fail(breaker)
    assert breaker.state is BreakerState.OPEN and changes == [BreakerState.OPEN]
    assert breaker.admit() is None
    assert breaker.retry_after() == pytest.approx(5.0)
    clock.now += 3.0
    assert breaker.admit() is None
    assert breaker.retry_after() == pytest.approx(2.0)


def test_failures_spread_wider_than_the_window_do_not_open_it(clock):
    breaker, changes = _breaker(clock)
    for _ in range(10):
        _fail(breaker)
        clock.now += 6.0  # never three within 10 s
    assert breaker.state is BreakerState.CLOSED and changes == []


def test_successes_do_not_hide_failures_in_the_window(clock):
    breaker, _ = _breaker(clock)
    for _ in range(2):
        _fail(breaker)
        ticket = breaker.admit()
        assert ticket is not None
        breaker.succeeded(ticket, 0.001)
    _fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_after_the_cooldown_one_trial_goes_through_and_its_success_closes(clock):
    breaker, changes = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 5.0
    trial = breaker.admit()
    assert trial is not None and breaker.state is BreakerState.HALF_OPEN
    assert breaker.admit() is None  # one trial at a time
    assert breaker.retry_after() == 0.0
    breaker.succeeded(trial, 0.001)
    assert breaker.state is BreakerState.CLOSED
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    # Closed again with its failures forgotten: two more do not open it.
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED


def test_a_failing_trial_opens_it_again_for_a_fresh_cooldown(clock):
    breaker, changes = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 7.0
    _fail(breaker)  # the trial
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(5.0)
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN]


def test_half_open_calls_bounds_the_trials_and_all_must_succeed(clock):
    breaker, _ = _breaker(clock, half_open_calls=2)
    _fail(breaker, 3)
    clock.now += 5.0
    first, second = breaker.admit(), breaker.admit()
    assert first is not None and second is not None
    assert breaker.admit() is None
    breaker.succeeded(first, 0.001)
    assert breaker.state is BreakerState.HALF_OPEN
    third = breaker.admit()  # the first trial's place is free again
    assert third is not None
    breaker.succeeded(second, 0.001)
    assert breaker.state is BreakerState.CLOSED
    breaker.succeeded(third, 0.001)  # an outcome of the old epoch changes nothing
    assert breaker.state is BreakerState.CLOSED


def test_a_released_trial_frees_its_place_without_deciding(clock):
    breaker, _ = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 5.0
    trial = breaker.admit()
    assert trial is not None
    breaker.released(trial)  # the client's bad input: says nothing about the model
    assert breaker.state is BreakerState.HALF_OPEN
    again = breaker.admit()
    assert again is not None
    breaker.succeeded(again, 0.001)
    assert breaker.state is BreakerState.CLOSED


def test_an_answer_slower_than_the_latency_bound_counts_as_a_failure(clock):
    breaker, _ = _breaker(clock, latency=0.2)
    for _ in range(2):
        ticket = breaker.admit()
        assert ticket is not None
        breaker.succeeded(ticket, 0.1)
    for _ in range(3):
        ticket = breaker.admit()
        assert ticket is not None
        breaker.succeeded(ticket, 0.5)
    assert breaker.state is BreakerState.OPEN


def test_outcomes_of_requests_admitted_before_a_change_are_ignored(clock):
    breaker, _ = _breaker(clock)
    late = breaker.admit()  # admitted while closed, answered much later
    assert late is not None
    _fail(breaker, 3)
    assert breaker.state is BreakerState.OPEN
    breaker.failed(late)  # does not extend the cool-down
    assert breaker.retry_after() == pytest.approx(5.0)
    clock.now += 5.0
    trial = breaker.admit()
    assert trial is not None
    breaker.succeeded(late, 0.001)  # not a trial: does not close it
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.failed(late)  # nor reopen it
    assert breaker.state is BreakerState.HALF_OPEN


@pytest.mark.parametrize("kwargs", [
    {"failures": 0}, {"half_open_calls": 0}, {"window": 0.0}, {"cooldown": -1.0},
    {"latency": 0.0},
])
def test_settings_out_of_range_are_refused(clock, kwargs):
    with pytest.raises(ValueError, match="must be"):
        _breaker(clock, **kwargs)
