"""The rate-limit policy and its token buckets (issue 16 item 1), on a fake clock."""

from __future__ import annotations

import pytest

from ferry.call import CallContext, internal_call
from ferry.errors import ConfigError, RateLimitedError
from ferry.limits import Rate, RateLimit, TokenBuckets, caller_key
from ferry.policy import Action, Kind, Stage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _call(peer: str | None = "10.0.0.7:5123", principal: str | None = None,
          protocol: str = "rest") -> CallContext:
    call = CallContext("rid", protocol, "test", peer=peer)  # type: ignore[arg-type]
    call.principal = principal
    return call


INFER = Action(Kind.INFER, "digits")


def test_a_bucket_lets_burst_calls_through_then_refuses_until_it_refills():
    clock = Clock()
    buckets = TokenBuckets(Rate(rate=10.0, burst=3), clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.1)  # one token comes back in 1/10 s
    clock.now += 0.05
    assert buckets.take("a") == pytest.approx(0.05)
    clock.now += 0.05
    assert buckets.take("a") == 0.0
    clock.now += 60  # a long idle time refills to the burst, never beyond
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_callers_have_their_own_buckets_and_overrides_their_own_rule():
    clock = Clock()
    buckets = TokenBuckets(Rate(1.0, 1), overrides={"key:batch": Rate(100.0, 50)}, clock=clock)
    assert buckets.take("ip:1.2.3.4") == 0.0
    assert buckets.take("ip:1.2.3.4") > 0
    assert buckets.take("ip:5.6.7.8") == 0.0  # another caller is not affected
    assert all(buckets.take("key:batch") == 0.0 for _ in range(50))
    assert buckets.take("key:batch") == pytest.approx(0.01)


def test_the_table_is_bounded_and_drops_the_least_recently_used_bucket():
    clock = Clock()
    buckets = TokenBuckets(Rate(1.0, 1), max_keys=100, clock=clock)
    buckets.take("ip:victim")
    for i in range(10_000):  # a client rotating addresses
        buckets.take(f"ip:10.0.{i >> 8}.{i & 255}")
        if i == 50:
            assert buckets.take("ip:victim") > 0  # still known: recently used
    assert len(buckets) == 100
    # The victim's bucket was dropped: it starts full again (eviction only loosens).
    assert buckets.take("ip:victim") == 0.0
    assert len(buckets) == 100


@pytest.mark.parametrize(("peer", "principal", "key"), [
    ("127.0.0.1:5555", None, "ip:127.0.0.1"),
    ("::1:5555", None, "ip:::1"),
    ("ipv4:10.1.2.3:40000", None, "ip:10.1.2.3"),
    ("ipv6:[2001:db8::1]:40000", None, "ip:2001:db8::1"),
    ("unix:/tmp/sock", None, "ip:unix:/tmp/sock"),
    (None, None, "ip:unknown"),
    ("127.0.0.1:5555", "key:ci", "key:ci"),
], ids=["rest-ipv4", "rest-ipv6", "grpc-ipv4", "grpc-ipv6", "unix", "no-peer", "principal"])
def test_a_caller_is_its_principal_or_its_peers_host(peer, principal, key):
    assert caller_key(_call(peer, principal)) == key


def test_ports_of_one_host_share_a_bucket():
    policy = RateLimit(Rate(1.0, 1), clock=Clock())
    policy.check(_call("10.0.0.7:1000"), INFER)
    with pytest.raises(RateLimitedError):
        policy.check(_call("10.0.0.7:2000"), INFER)
    policy.check(_call("10.0.0.8:1000"), INFER)


def test_the_policy_refuses_with_retry_after_and_names_the_limit():
    clock = Clock()
    policy = RateLimit(Rate(2.0, 2), clock=clock)
    assert policy.stage is Stage.RATE_LIMIT
    call = _call(principal="jwt:alice")
    policy.check(call, INFER)
    policy.check(call, INFER)
    with pytest.raises(RateLimitedError) as caught:
        policy.check(call, INFER)
    assert caught.value.retry_after == pytest.approx(0.5)
    assert "'jwt:alice'" in caught.value.message
    assert "2 calls/s, 2 at once" in caught.value.message
    clock.now += 0.5
    policy.check(call, INFER)


def test_health_internal_work_and_other_kinds_take_no_token_by_default():
    policy = RateLimit(Rate(1.0, 1), clock=Clock())
    call = _call()
    for kind in (Kind.LIVE, Kind.READY, Kind.MODEL_READY, Kind.MODEL_METADATA, Kind.INDEX,
                 Kind.LOAD):
        for _ in range(5):
            policy.check(call, Action(kind, "digits"))
    for _ in range(5):
        policy.check(internal_call("sighup-reload"), INFER)
    policy.check(call, INFER)
    with pytest.raises(RateLimitedError):
        policy.check(call, INFER)


def test_every_call_but_health_when_asked():
    policy = RateLimit(Rate(1.0, 2), kinds=list(Kind), clock=Clock())
    call = _call()
    policy.check(call, Action(Kind.MODEL_METADATA, "digits"))
    policy.check(call, Action(Kind.INDEX))
    with pytest.raises(RateLimitedError):
        policy.check(call, Action(Kind.SERVER_METADATA))
    for kind in (Kind.LIVE, Kind.READY, Kind.MODEL_READY):
        policy.check(call, Action(kind))


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_rule_that_refuses_everything_is_a_config_error(rate, burst):
    with pytest.raises(ConfigError):
        Rate(rate, burst)
