"""Per-caller rate limits: a token bucket per principal, one policy for every door.

Each caller has a bucket of ``burst`` tokens that refills at ``rate`` tokens a second; a
call takes one token, and a call that finds its bucket empty is refused with
:class:`~ferry.errors.RateLimitedError` before any work is done: REST answers 429 with
``Retry-After``, gRPC ``RESOURCE_EXHAUSTED`` with ``retry-after`` and
``grpc-retry-pushback-ms`` metadata (each door's error table does that; the policy never
learns HTTP or gRPC). ``retry_after`` is the time until the bucket holds a token again.

**Who is a caller** (:func:`caller_key`): the principal the authenticating policy set
(``key:NAME``, ``jwt:SUB``, ``cert:CN``), or, for an anonymous call, the host of its peer
address (``ip:HOST``): all connections from one host share a bucket, whatever port they
come from. The policy runs at :attr:`Stage.RATE_LIMIT`, after authentication and
authorization, so a caller that is refused there spends no token (and a flood of bad
credentials is the authenticating policy's to bear: its cache and the connection bounds).

**Bounded**: the table holds at most ``max_callers`` buckets; past it, the least recently
used bucket is dropped. A client that rotates addresses or keys therefore cannot grow the
table; the cost of a dropped bucket is that its caller, when it comes back, starts with a
full bucket again (a limit can only be loosened by eviction, never tightened by another
caller). A bucket that has refilled is equal to no bucket, so an idle caller loses nothing.

Buckets are per process: with ``ferry serve --workers N`` each worker has its own table, and
a caller whose connections the kernel spreads over several workers may get up to N times
``rate``.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ferry.call import CallContext
from ferry.errors import ConfigError, RateLimitedError, quote_name
from ferry.policy import Action, Kind, Stage

__all__ = ["HEALTH", "Rate", "RateLimit", "TokenBuckets", "caller_key"]

#: Calls no rate limit ever counts: probes must see the server's state, not the prober's.
HEALTH = frozenset({Kind.LIVE, Kind.READY, Kind.MODEL_READY})

_ALMOST_ONE = 1.0 - 1e-9


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket's rule: ``rate`` tokens a second, at most ``burst`` held at once."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        """Refuse a rule that would refuse every call (``ConfigError``)."""
        if not self.rate > 0:
            raise ConfigError(f"a rate limit's rate must be positive, got {self.rate}")
        if self.burst < 1:
            raise ConfigError(f"a rate limit's burst must be at least 1, got {self.burst}")


class _Bucket:
    __slots__ = ("rule", "stamp", "tokens")

    def __init__(self, rule: Rate, tokens: float, stamp: float) -> None:
        self.rule = rule
        self.tokens = tokens
        self.stamp = stamp


class TokenBuckets:
    """A bounded table of token buckets, one per key, the least recently used dropped first.

    Args:
        default: the rule of every key without an override.
        overrides: rules for particular keys (a principal, or ``ip:HOST``).
        max_keys: the most buckets held; past it the least recently used is dropped.
        clock: seconds, monotonic (a fake one in tests).
    """

    __slots__ = ("_buckets", "_clock", "_default", "_overrides", "max_keys")

    def __init__(self, default: Rate, *, overrides: Mapping[str, Rate] | None = None,
                 max_keys: int = 65_536,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ConfigError(f"a rate limit table needs room for one caller, got {max_keys}")
        self._default = default
        self._overrides = dict(overrides or {})
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def rule(self, key: str) -> Rate:
        """The rule ``key`` is held to."""
        return self._overrides.get(key, self._default)

    def take(self, key: str) -> float:
        """Take one token from ``key``'s bucket: 0.0 if taken, else seconds until one is back."""
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            rule = self._overrides.get(key, self._default)
            while len(buckets) >= self.max_keys:
                # Another thread may have emptied the table meanwhile: nothing to drop then.
                with contextlib.suppress(KeyError):
                    buckets.popitem(last=False)
            bucket = buckets[key] = _Bucket(rule, float(rule.burst), now)
        else:
            buckets.move_to_end(key)
            rule = bucket.rule
            tokens = bucket.tokens + (now - bucket.stamp) * rule.rate
            bucket.tokens = tokens if tokens < rule.burst else float(rule.burst)
            bucket.stamp = now
        if bucket.tokens > _ALMOST_ONE:  # (not >= 1.0: refills are sums of float steps)
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rule.rate


def caller_key(call: CallContext) -> str:
    """Whose bucket a call takes from: its principal, else ``ip:`` and its peer's host.

    REST peers are ``host:port`` (an IPv6 host unbracketed), gRPC peers ``ipv4:host:port``
    or ``ipv6:[host]:port``; a call without a known peer is ``ip:unknown``.
    """
    if call.principal is not None:
        return call.principal
    peer = call.peer
    if not peer:
        return "ip:unknown"
    if peer.startswith(("ipv4:", "ipv6:")):
        peer = peer[5:]
    host, colon, port = peer.rpartition(":")
    if not colon or not port.isdigit():
        host = peer  # no port (a unix socket's path, say): the whole address
    return "ip:" + host.strip("[]")


class RateLimit:
    """The rate-limit policy: a token per call from the caller's bucket, or 429.

    Args:
        rate: the rule of every caller without an override.
        overrides: rules for particular callers, keyed as :func:`caller_key` names them
            (``key:batch-job``, ``jwt:alice``, ``ip:10.0.0.7``).
        kinds: the calls that take a token; by default inference only. Health calls
            (:data:`HEALTH`) and ferry's own work never do.
        max_callers: the most buckets held (least recently used dropped first).
        clock: seconds, monotonic (a fake one in tests).
    """

    stage = Stage.RATE_LIMIT

    def __init__(self, rate: Rate, *, overrides: Mapping[str, Rate] | None = None,
                 kinds: Iterable[Kind] = (Kind.INFER,), max_callers: int = 65_536,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.buckets = TokenBuckets(rate, overrides=overrides, max_keys=max_callers,
                                    clock=clock)
        self.kinds = frozenset(kinds) - HEALTH

    def __repr__(self) -> str:
        return (f"RateLimit(rate={self.buckets.rule('').rate:g}/s, "
                f"burst={self.buckets.rule('').burst}, callers={len(self.buckets)})")

    def check(self, call: CallContext, action: Action) -> None:
        """Take a token for ``call``, or raise :class:`RateLimitedError` (429)."""
        if action.kind not in self.kinds or call.protocol == "internal":
            return
        key = caller_key(call)
        wait = self.buckets.take(key)
        if wait:
            rule = self.buckets.rule(key)
            raise RateLimitedError(
                f"rate limit reached for {quote_name(key)}: {rule.rate:g} calls/s, "
                f"{rule.burst} at once", retry_after=wait,
                hint="slow down and retry after the time given")
