"""Issue 16's overload runs: the saturating connection count and the counts measured past it.

The rule, applied to W1's V2 JSON on a ``ferry serve`` with default settings:

1. Short probe runs at 4, 8, 16, 32 and 64 connections; the peak is the best 2xx answers/s
   among them.
2. The saturating count is the smallest probed count whose 2xx answers/s reach 90 % of that
   peak: more connections than that add waiting, not answers.
3. Goodput runs at 1 x, 4 x and 16 x that count (default settings: back-pressure), and at
   4 x and 16 x against a server in refusal mode (``max_waiting`` 0, a small ``max_queue``).

A multiple whose connection count the machine cannot hold (the open-file limit, shared by
the load generator's sockets; the server's ``http_max_connections``) is capped, and the plan
says so. Pure: no processes, no sockets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Connection counts of the saturation probe.
PROBE_CONNECTIONS = (4, 8, 16, 32, 64)
#: Seconds of each probe run (at most; never longer than ``--duration``).
PROBE_SECONDS = 5.0
#: A count saturates the server when its 2xx answers/s reach this share of the peak.
SATURATION_SHARE = 0.9
#: Multiples of the saturating count measured with default settings (back-pressure).
MULTIPLES = (1, 4, 16)
#: Multiples measured again in refusal mode.
REFUSE_MULTIPLES = (4, 16)
#: Refusal mode: ``max_waiting`` 0 (past ``max_queue``, 429 at once) and this ``max_queue``.
REFUSE_MAX_QUEUE = 16
#: File descriptors kept free under the open-file limit (logs, pipes, the harness's own).
FD_RESERVE = 128


@dataclass(frozen=True)
class Saturation:
    """What the probe found: the peak 2xx answers/s, where, and the saturating count."""

    peak: float
    peak_connections: int
    connections: int


@dataclass(frozen=True)
class OverloadPlan:
    """The saturation found and the connection count of each multiple measured past it."""

    saturation: Saturation
    #: (multiple, connections) in the order measured; connections below multiple x count
    #: when capped.
    runs: tuple[tuple[int, int], ...]
    #: Set when a multiple was capped: why, with the numbers.
    note: str = ""

    def connections(self, multiple: int) -> int | None:
        """The connection count measured for ``multiple``, None if it is not in the plan."""
        return next((conns for m, conns in self.runs if m == multiple), None)


def saturation(good_rps: Mapping[int, float], share: float = SATURATION_SHARE
               ) -> Saturation | None:
    """The peak of the probe's 2xx answers/s by connection count, and the saturating count.

    None when no probe run answered anything (the server did not serve: no rows past it).
    """
    answered = {conns: rps for conns, rps in good_rps.items() if rps > 0}
    if not answered:
        return None
    peak_connections = max(answered, key=lambda conns: (answered[conns], -conns))
    peak = answered[peak_connections]
    saturating = min(conns for conns, rps in answered.items() if rps >= share * peak)
    return Saturation(peak, peak_connections, saturating)


def connection_cap(open_files: int, server_max_connections: int,
                   reserve: int = FD_RESERVE) -> int:
    """The most connections one load run may open.

    The load generator holds one socket per connection under its open-file limit
    (``open_files``, the soft ``RLIMIT_NOFILE``), less a reserve; the server closes those
    past its ``http_max_connections`` unanswered.
    """
    return max(1, min(open_files - reserve, server_max_connections))


def plan(found: Saturation, cap: int, multiples: tuple[int, ...] = MULTIPLES) -> OverloadPlan:
    """The connection count of each multiple of the saturating count, capped at ``cap``."""
    runs = tuple((m, min(m * found.connections, cap)) for m in multiples)
    capped = [m for m, conns in runs if conns < m * found.connections]
    note = ""
    if capped:
        shown = ", ".join(f"{m} x" for m in capped)
        note = (f"{shown} capped at {cap} connections (open-file limit and the server's "
                f"http_max_connections), not {max(capped) * found.connections}")
    return OverloadPlan(found, runs, note)
