"""The compiled load generators: wrk for HTTP/1.1, h2load for gRPC; their commands and reports.

Both are closed-loop: each connection sends its next request when the answer to the last one
arrives, so ``connections`` is the concurrency. Both run for a fixed time and stop by
themselves; the caller also bounds them with a subprocess timeout.

wrk reports through ``wrk/post.lua``'s ``WRK_JSON`` line (statuses counted per response).
h2load (nghttp2's HTTP/2 benchmark) drives gRPC by POSTing the framed protobuf body with the
gRPC headers; it reports HTTP statuses only, so gRPC status codes (sent in trailers) are
counted on the server instead (see ``benchmarks.metrics``), and latency percentiles come from
its per-request log file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).parent / "wrk" / "post.lua"


class LoadgenError(RuntimeError):
    """A load generator failed or printed something this module cannot read."""


@dataclass(frozen=True)
class LoadResult:
    """What one timed load run measured."""

    tool: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    detail: str = ""
    #: Answers by HTTP status, (status, count) sorted by status (wrk only; empty for h2load).
    statuses: tuple[tuple[int, int], ...] = ()
    #: Connect, read and write errors and timeouts (wrk only).
    socket_errors: int = 0

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def answered(self, low: int, high: int | None = None) -> int:
        """Answers whose status is ``low`` (or within ``low``..``high``), from ``statuses``."""
        top = low if high is None else high
        return sum(n for status, n in self.statuses if low <= status <= top)

    @property
    def good_rps(self) -> float:
        """2xx answers per second (goodput): refusals and errors left out."""
        return self.answered(200, 299) / self.seconds if self.seconds > 0 else 0.0

    @property
    def refused_rps(self) -> float:
        """429 answers (refusals) per second."""
        return self.answered(429) / self.seconds if self.seconds > 0 else 0.0

    def with_errors(self, extra: int, note: str) -> LoadResult:
        """The same result with errors counted elsewhere (e.g. gRPC statuses on the server)."""
        detail = f"{self.detail}; {note}" if self.detail else note
        return LoadResult(self.tool, self.connections, self.requests, self.seconds,
                          self.p50_ms, self.p99_ms, self.errors + extra, detail,
                          self.statuses, self.socket_errors)


# ---------------------------------------------------------------------------------- wrk


#: What ``post.lua`` reads as "send no Content-Type header" (tritonclient.http sends none).
NO_CONTENT_TYPE = "-"
#: What ``post.lua`` reads as "not given" for a positional argument before a given one.
NO_VALUE = "-"


def wrk_command(url: str, body: Path, *, connections: int, seconds: float,
                content_type: str | None = "application/json", timeout_s: float = 10.0,
                script: Path = LUA_SCRIPT, header_length: int | None = None,
                headers_file: Path | None = None) -> list[str]:
    """The wrk command line: one thread (one core), ``connections`` connections, POST ``body``.

    ``content_type`` None sends no ``Content-Type`` header at all (wrk adds none of its own).
    ``header_length`` sends ``Inference-Header-Content-Length`` (V2 binary tensor data).
    ``headers_file`` holds more headers, one ``Name: value`` a line, sent with every request:
    a credential goes there, never on the command line. ``url`` may be ``https://`` (wrk
    keeps each connection open, and does not verify the certificate).
    """
    extra = [str(header_length)] if header_length is not None else []
    if headers_file is not None:
        extra = [*(extra or [NO_VALUE]), str(headers_file)]
    return ["wrk", "-t1", f"-c{connections}", f"-d{_secs(seconds)}s",
            f"--timeout={_secs(timeout_s)}s", "--latency", "-s", str(script),
            url, "--", str(body), content_type or NO_CONTENT_TYPE, *extra]


def parse_wrk(output: str, connections: int) -> LoadResult:
    """Read the ``WRK_JSON`` line that ``post.lua`` prints when wrk finishes.

    Raises:
        LoadgenError: no such line (wrk failed before the run, or the script was not used).
    """
    line = next((ln for ln in output.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise LoadgenError(f"wrk printed no WRK_JSON summary:\n{output[-2000:]}")
    doc = json.loads(line.removeprefix("WRK_JSON "))
    statuses = {int(k): int(v) for k, v in doc["statuses"].items()}
    socket_errors = sum(int(doc[k]) for k in ("connect", "read", "write", "timeout"))
    detail = "statuses " + (", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
                            or "none")
    if socket_errors:
        detail += (f"; socket errors connect {doc['connect']}, read {doc['read']}, "
                   f"write {doc['write']}, timeout {doc['timeout']}")
    return LoadResult(
        tool="wrk", connections=connections, requests=int(doc["requests"]),
        seconds=int(doc["duration_us"]) / 1e6,
        p50_ms=int(doc["p50_us"]) / 1000, p99_ms=int(doc["p99_us"]) / 1000,
        errors=int(doc["non2xx"]) + socket_errors, detail=detail,
        statuses=tuple(sorted(statuses.items())), socket_errors=socket_errors,
    )


# ------------------------------------------------------------------------------- h2load


def h2load_command(url: str, body: Path, *, connections: int, seconds: float, warmup: float,
                   log_file: Path, headers: Sequence[str] = (
                       "content-type: application/grpc", "te: trailers")) -> list[str]:
    """The h2load command line: one thread, one stream per connection, timed, logging each call.

    ``-m 1`` keeps one request in flight per connection, so ``connections`` means the same
    concurrency as for wrk.
    """
    command = ["h2load", "-t1", f"-c{connections}", "-m1", f"-D{_millis(seconds)}",
               f"--warm-up-time={_millis(warmup)}", "-d", str(body), f"--log-file={log_file}"]
    for header in headers:
        command += ["-H", header]
    return [*command, url]


_H2_FINISHED = re.compile(r"^finished in ([\d.]+)(ms|s), ([\d.]+) req/s", re.M)
_H2_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout", re.M)
_H2_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)


def parse_h2load(output: str, log_lines: Iterable[str], connections: int) -> LoadResult:
    """Read h2load's summary, and latency percentiles from its ``--log-file``.

    The log has one tab-separated line per request: start time, HTTP status, duration in
    microseconds (h2load writes it for the measured phase only, not the warm-up).

    Raises:
        LoadgenError: the summary lines are missing.
    """
    finished, requests, status = (p.search(output) for p in (_H2_FINISHED, _H2_REQUESTS,
                                                              _H2_STATUS))
    if not (finished and requests and status):
        raise LoadgenError(f"cannot read h2load's summary:\n{output[-2000:]}")
    _, _, done, succeeded, failed, errored, timeout = (int(g) for g in requests.groups())
    # "finished in" includes the warm-up; the counts and req/s cover the measured phase only,
    # so the measured seconds are recovered from them.
    rate = float(finished.group(3))
    seconds = (succeeded / rate if rate > 0 else
               float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1))
    ok2xx, r3xx, r4xx, r5xx = (int(g) for g in status.groups())
    durations = []
    for line in log_lines:
        fields = line.split()
        if len(fields) >= 3:
            durations.append(int(fields[2]))
    # h2load's "failed" already includes "errored" (which includes "timeout") and HTTP
    # failures; 3xx is no failure to h2load but is not an answer here either.
    errors = max(failed, errored + r4xx + r5xx) + r3xx
    detail = (f"HTTP 2xx {ok2xx}, 3xx {r3xx}, 4xx {r4xx}, 5xx {r5xx}; failed {failed}, "
              f"errored {errored}, timeout {timeout}")
    return LoadResult(
        tool="h2load", connections=connections, requests=succeeded if done else 0,
        seconds=seconds, p50_ms=_percentile_ms(durations, 50),
        p99_ms=_percentile_ms(durations, 99), errors=errors, detail=detail,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _percentile_ms(durations_us: Sequence[int], q: float) -> float | None:
    return percentile(durations_us, q) / 1000 if durations_us else None


def _millis(value: float) -> str:
    """h2load's DURATION: an integer with a unit (it refuses "0.5")."""
    return f"{round(value * 1000)}ms"


def _secs(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
