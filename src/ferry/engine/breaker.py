"""A circuit breaker: the state machine that stops sending requests to a failing version.

One :class:`Breaker` guards one served model version (the engine keeps one per version of
a model whose ``config.toml`` has a ``[breaker]`` table)::

               failures in the window reach the bound
      CLOSED ──────────────────────────────────────────▶ OPEN
        ▲                                                 │  cool-down passed
        │ half_open_calls trials succeeded                ▼  (next request)
        └──────────────────────────────────────────── HALF_OPEN
                 a trial failed: OPEN again (a fresh cool-down) ──▶

* **closed**: every request goes through. A failure (a runtime failure of the model, or an
  answer slower than the latency bound) is remembered with its time; when ``failures`` of
  them fall within ``window`` seconds, the breaker opens. Only the last ``failures`` times
  are kept, so memory is bounded whatever the traffic.
* **open**: nothing goes through (:meth:`Breaker.admit` returns None) until ``cooldown``
  seconds have passed; :meth:`Breaker.retry_after` says how long is left.
* **half-open**: at most ``half_open_calls`` trial requests at a time go through; the others
  are refused as if open. Once ``half_open_calls`` trials have succeeded the breaker closes
  (and forgets its failures); a failing trial opens it again.

What counts as a failure is the caller's decision (the engine counts runtime failures and
slow answers; a client's bad input, a full queue or a passed deadline says nothing about the
model and is :meth:`Breaker.released`). Every admitted request carries a *ticket*, the
breaker's epoch when it was admitted: an outcome reported for an older epoch (a request
admitted before the breaker last changed state) changes nothing, so a slow request that
was admitted while closed cannot close a breaker that opened meanwhile.

The clock is injected (``time.monotonic`` by default), so tests drive the state machine
with a clock of their own. Not thread-safe: the engine calls it from its event loop only.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Breaker", "BreakerState"]


class BreakerState(enum.IntEnum):
    """A breaker's state; the value is what the ``ferry_breaker_state`` gauge shows.

    Ordered by how bad it is, so that the largest value over several workers is the worst.
    """

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Breaker:
    """A circuit breaker over one target (see the module docstring).

    Args:
        failures: failures within ``window`` seconds that open the breaker (>= 1).
        window: the sliding window, in seconds (> 0).
        cooldown: how long the breaker stays open before it lets trial requests through.
        half_open_calls: trial requests admitted at a time while half-open, and the
            number of successful trials that close the breaker (>= 1).
        latency: an answer slower than this many seconds counts as a failure (None: no
            latency bound).
        clock: seconds from a monotonic clock.
        on_change: called with the new state after each change of state.
    """

    __slots__ = ("_clock", "_cooldown", "_epoch", "_failures", "_latency", "_on_change",
                 "_passed", "_recent", "_state", "_trials", "_trials_max", "_until",
                 "_window")

    def __init__(self, *, failures: int, window: float, cooldown: float,
                 half_open_calls: int = 1, latency: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[BreakerState], None] | None = None) -> None:
        if failures < 1 or half_open_calls < 1:
            raise ValueError("failures and half_open_calls must be at least 1")
        if window <= 0 or cooldown <= 0 or (latency is not None and latency <= 0):
            raise ValueError("window, cooldown and latency must be positive")
        self._failures = failures
        self._window = window
        self._cooldown = cooldown
        self._trials_max = half_open_calls
        self._latency = latency
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._epoch = 0
        self._recent: deque[float] = deque(maxlen=failures)
        self._until = 0.0  # while open: when the cool-down ends
        self._trials = 0  # while half-open: trial requests admitted and not yet done
        self._passed = 0  # while half-open: trial requests that succeeded

    @property
    def state(self) -> BreakerState:
        """The state now.

        An open breaker turns half-open at the first :meth:`admit` after its cool-down,
        not by itself.
        """
        return self._state

    def admit(self) -> int | None:
        """Let one request through: its ticket, or None when the breaker refuses it.

        The ticket goes back with the outcome (:meth:`succeeded`, :meth:`failed` or
        :meth:`released`), exactly once.
        """
        state = self._state
        if state is BreakerState.CLOSED:
            return self._epoch
        if state is BreakerState.OPEN:
            if self._clock() < self._until:
                return None
            self._enter(BreakerState.HALF_OPEN)
        if self._trials >= self._trials_max:
            return None
        self._trials += 1
        return self._epoch

    def retry_after(self) -> float:
        """Seconds until the breaker may let a request through again (0 when it may now)."""
        if self._state is BreakerState.OPEN:
            return max(0.0, self._until - self._clock())
        return 0.0

    def succeeded(self, ticket: int, seconds: float) -> None:
        """The request of ``ticket`` was answered after ``seconds`` (a failure if too slow)."""
        if self._latency is not None and seconds > self._latency:
            self.failed(ticket)
            return
        if ticket != self._epoch or self._state is not BreakerState.HALF_OPEN:
            return
        self._trials -= 1
        self._passed += 1
        if self._passed >= self._trials_max:
            self._enter(BreakerState.CLOSED)

    def failed(self, ticket: int) -> None:
        """The request of ``ticket`` failed in a way that counts against the target."""
        if ticket != self._epoch:
            return
        if self._state is BreakerState.HALF_OPEN:
            self._enter(BreakerState.OPEN)
            return
        if self._state is BreakerState.CLOSED:
            now = self._clock()
            recent = self._recent
            recent.append(now)
            if len(recent) == self._failures and now - recent[0] <= self._window:
                self._enter(BreakerState.OPEN)

    def released(self, ticket: int) -> None:
        """The request of ``ticket`` ended in a way that says nothing about the target."""
        if ticket == self._epoch and self._state is BreakerState.HALF_OPEN:
            self._trials -= 1

    def _enter(self, state: BreakerState) -> None:
        self._state = state
        self._epoch += 1
        self._trials = self._passed = 0
        if state is BreakerState.OPEN:
            self._until = self._clock() + self._cooldown
        elif state is BreakerState.CLOSED:
            self._recent.clear()
        if self._on_change is not None:
            self._on_change(state)
