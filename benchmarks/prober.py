"""One client beside wrk that times each answer by its status: the refusals' own latency.

wrk's percentiles cover every answer of a run, and its script hooks cannot time one answer
(``response()`` knows neither the connection nor when its request left). Issue 16 asks how
fast *refusals* are answered, so during a refusal-mode run this client, pinned to the load
generator's core, sends the run's request again and again on one keep-alive connection
(closed-loop, like each of wrk's connections; it reconnects when the server closes) and
records each answer's latency, from sending the request to reading the whole answer, by
HTTP status. It is one connection more among wrk's hundreds, so it sees what they see.

``python -m benchmarks.prober URL BODY_FILE SECONDS [CONTENT_TYPE [DELAY]]`` waits DELAY
seconds (so that wrk's connections are open first), then probes for SECONDS and prints one
line,
``PROBE_JSON {"statuses": {"429": {"count": n, "p50_ms": x, "p99_ms": y}, ...},
"errors": n}``, that :func:`parse_probe` reads. Pure except :func:`main`.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.loadgen import LoadgenError, percentile


@dataclass(frozen=True)
class StatusLatency:
    """Answers of one HTTP status the probe saw, and their latency."""

    status: int
    count: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class ProbeResult:
    """What the probe saw during one run: latency by status, and its own failed requests."""

    statuses: tuple[StatusLatency, ...]
    #: Requests that got no answer (connection refused or cut, timeout).
    errors: int = 0

    def of(self, status: int) -> StatusLatency | None:
        """The answers with ``status``, None if there was none."""
        return next((s for s in self.statuses if s.status == status), None)


def probe_command(python: str, url: str, body: Path, seconds: float,
                  content_type: str = "application/json", delay: float = 0.0) -> list[str]:
    """The probe's command line (the caller pins it to the load generator's core)."""
    return [python, "-m", "benchmarks.prober", url, str(body), f"{seconds:g}", content_type,
            f"{delay:g}"]


def summarize(latencies_ms: Mapping[int, Sequence[float]], errors: int) -> str:
    """The ``PROBE_JSON`` line for latencies (ms) by status."""
    doc = {"statuses": {str(status): {"count": len(values),
                                      "p50_ms": round(percentile(values, 50), 3),
                                      "p99_ms": round(percentile(values, 99), 3)}
                        for status, values in sorted(latencies_ms.items()) if values},
           "errors": errors}
    return "PROBE_JSON " + json.dumps(doc)


def parse_probe(output: str) -> ProbeResult:
    """Read the ``PROBE_JSON`` line.

    Raises:
        LoadgenError: no such line (the probe failed before it could report).
    """
    line = next((ln for ln in output.splitlines() if ln.startswith("PROBE_JSON ")), None)
    if line is None:
        raise LoadgenError(f"the probe printed no PROBE_JSON line:\n{output[-2000:]}")
    doc = json.loads(line.removeprefix("PROBE_JSON "))
    statuses = tuple(StatusLatency(int(status), int(s["count"]), float(s["p50_ms"]),
                                   float(s["p99_ms"]))
                     for status, s in sorted(doc["statuses"].items(), key=lambda kv: int(kv[0])))
    return ProbeResult(statuses, int(doc["errors"]))


def run(url: str, body: bytes, seconds: float, content_type: str,
        timeout: float = 10.0) -> tuple[dict[int, list[float]], int]:
    """POST ``body`` to ``url`` one request at a time for ``seconds``; latencies by status."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    headers = {"Content-Type": content_type}
    latencies: dict[int, list[float]] = {}
    errors = 0
    connection: http.client.HTTPConnection | None = None
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if connection is None:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        started = time.perf_counter()
        try:
            connection.request("POST", parts.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            connection = None
            time.sleep(0.001)
            continue
        latencies.setdefault(response.status, []).append(
            (time.perf_counter() - started) * 1000)
        if response.will_close:
            connection.close()
            connection = None
    if connection is not None:
        connection.close()
    return latencies, errors


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.prober URL BODY_FILE SECONDS [CONTENT_TYPE [DELAY]]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 3 <= len(args) <= 5:
        print("usage: python -m benchmarks.prober URL BODY_FILE SECONDS [CONTENT_TYPE "
              "[DELAY]]", file=sys.stderr)
        return 2
    url, body, seconds = args[0], Path(args[1]).read_bytes(), float(args[2])
    content_type = args[3] if len(args) > 3 else "application/json"
    time.sleep(float(args[4]) if len(args) > 4 else 0.0)
    latencies, errors = run(url, body, seconds, content_type)
    print(summarize(latencies, errors), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
