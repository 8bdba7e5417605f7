"""One client beside wrk that times each answer by its status: the refusals' own latency.

wrk's percentiles cover every answer of a run, and its script hooks cannot time one answer
(``response()`` knows neither the connection nor when its request left). Issue 16 asks how
fast *refusals* are answered, so during a refusal-mode run this client, pinned to the load
generator's core, sends the run's request again and again on a few keep-alive connections
(closed-loop, like each of wrk's connections; one thread each, reconnecting when the server
closes) and records each answer's latency, from sending the request to reading the whole
answer, by HTTP status. They are a few connections more among wrk's hundreds, so they see
what wrk's see; several, because under overload one connection may wait seconds for an
answer and then give no sample at all.

``python -m benchmarks.prober URL BODY_FILE SECONDS [--delay S] [--connections N]
[--content-type TYPE]`` waits ``--delay`` seconds (so that wrk's connections are open
first), then probes for SECONDS and prints one line, ``PROBE_JSON {"statuses": {"429":
{"count": n, "p50_ms": x, "p99_ms": y}, ...}, "errors": n}``, that :func:`parse_probe`
reads. :func:`run` and :func:`main` do the I/O; the rest is pure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.loadgen import LoadgenError, percentile

#: Connections the probe keeps busy (one thread each).
CONNECTIONS = 8


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


def probe_command(python: str, url: str, body: Path, seconds: float, *,
                  content_type: str = "application/json", delay: float = 0.0,
                  connections: int = CONNECTIONS) -> list[str]:
    """The probe's command line (the caller pins it to the load generator's core)."""
    return [python, "-m", "benchmarks.prober", url, str(body), f"{seconds:g}",
            f"--delay={delay:g}", f"--connections={connections}",
            f"--content-type={content_type}"]


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


def run(url: str, body: bytes, seconds: float, content_type: str, *,
        connections: int = CONNECTIONS, timeout: float = 10.0
        ) -> tuple[dict[int, list[float]], int]:
    """POST ``body`` to ``url`` for ``seconds`` on ``connections`` connections, one request
    at a time on each; latencies (ms) by status, and requests that got no answer."""
    deadline = time.perf_counter() + seconds
    results: list[tuple[dict[int, list[float]], int]] = []
    lock = threading.Lock()

    def one() -> None:
        got = _connection(url, body, deadline, content_type, timeout)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 2 * timeout)
    latencies: dict[int, list[float]] = {}
    errors = 0
    with lock:
        for by_status, failed in results:
            errors += failed
            for status, values in by_status.items():
                latencies.setdefault(status, []).extend(values)
    return latencies, errors


def _connection(url: str, body: bytes, deadline: float, content_type: str,
                timeout: float) -> tuple[dict[int, list[float]], int]:
    """One keep-alive connection's closed loop until ``deadline``."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    headers = {"Content-Type": content_type}
    latencies: dict[int, list[float]] = {}
    errors = 0
    connection: http.client.HTTPConnection | None = None
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
    """``python -m benchmarks.prober URL BODY_FILE SECONDS [options]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prober",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait first")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--content-type", default="application/json")
    args = parser.parse_args(argv)
    body = args.body.read_bytes()
    time.sleep(args.delay)
    latencies, errors = run(args.url, body, args.seconds, args.content_type,
                            connections=args.connections)
    print(summarize(latencies, errors), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
