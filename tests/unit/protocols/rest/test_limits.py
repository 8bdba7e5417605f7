"""The head bounds the ASGI app checks itself under another server (issue 16 item 1)."""

from __future__ import annotations

from ferry.protocols.rest.limits import HttpLimits, head_refusal

LIMITS = HttpLimits(max_head=1024, max_headers=10)


def _fields(count: int, value_size: int = 1) -> list[tuple[bytes, bytes]]:
    return [(b"x-f%d" % i, b"v" * value_size) for i in range(count)]


def test_a_head_within_both_bounds_passes():
    assert head_refusal(_fields(10), LIMITS) is None
    assert head_refusal([], LIMITS) is None


def test_one_field_too_many_is_refused_naming_the_count_and_the_limit():
    assert head_refusal(_fields(11), LIMITS) == (
        "the request has 11 header fields, more than the limit of 10")


def test_the_size_is_counted_as_on_the_wire_and_refused_one_byte_past_it():
    # One field "x-f0: <value>\r\n" is len(name) + len(value) + 4 bytes.
    exact = [(b"x-f0", b"v" * (1024 - 4 - 4))]
    assert head_refusal(exact, LIMITS) is None
    over = [(b"x-f0", b"v" * (1024 - 4 - 3))]
    assert head_refusal(over, LIMITS) == (
        "the request head is larger than the limit of 1024 bytes")
