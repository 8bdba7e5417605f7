"""Measurements, the issue's target ratios computed from them, and the results.md writer.

Everything here is pure (no processes, no sockets) so that it is unit-tested: a ratio whose
inputs were not measured is reported as "not measured", never as a pass.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from benchmarks.loadgen import LoadResult
from benchmarks.overload import (
    MULTIPLES,
    PROBE_CONNECTIONS,
    REFUSE_MAX_QUEUE,
    REFUSE_MULTIPLES,
    SATURATION_SHARE,
    OverloadPlan,
)
from benchmarks.prober import CONNECTIONS, ProbeResult

FERRY = "ferry"
FASTAPI = "FastAPI + ORT (async def, no access log)"
FASTAPI_TYPICAL = "FastAPI + ORT (def route, access log)"
FLASK = "Flask + Keras (seed)"
NOOP = "no-op, uvicorn + Starlette"
NOOP_GRPC = "no-op, grpc.aio servicer"

PREDICT = "/predict"
V2_JSON = "V2 JSON infer"
#: The same V2 JSON request with no Content-Type header, as tritonclient.http sends it.
V2_JSON_NO_TYPE = "V2 JSON infer, no Content-Type"
V2_BINARY = "V2 binary infer"
#: Issue 15: the same V2 JSON request, each against its own ``ferry serve`` configured so.
V2_JSON_API_KEY = "V2 JSON infer, API key"
V2_JSON_JWT = "V2 JSON infer, JWT"
V2_JSON_TLS = "V2 JSON infer, TLS"
#: Issue 21: the plain server while a client polls the console's live view every second.
V2_JSON_CONSOLE = "V2 JSON infer, console open"
#: The plain V2 JSON run measured before the first secured run and after each one, on a server
#: started the same way with no [security]: what each secured figure is paired with.
V2_JSON_CONTROL = "V2 JSON infer, beside the secured runs"
GRPC = "gRPC raw contents"
NOOP_ROUTE = "POST /noop"
#: Issue 16: W1's V2 JSON on a ``ferry serve`` with default settings (past ``max_queue``,
#: requests wait in line: back-pressure), and on one in refusal mode (429 at once).
OVERLOAD_WAIT = "ferry, overload: defaults (back-pressure)"
OVERLOAD_REFUSE = f"ferry, overload: max_waiting 0, max_queue {REFUSE_MAX_QUEUE} (refuse)"
#: The short runs that find the saturating connection count (server OVERLOAD_WAIT).
OVERLOAD_PROBE = "V2 JSON infer, saturation probe"
#: Issue 16's goals: goodput past saturation, and how fast refusals are answered.
GOODPUT_GOAL = 0.9
REFUSAL_P99_GOAL_MS = 10.0


@dataclass(frozen=True)
class Measurement:
    """One load run (or the reason it could not run)."""

    workload: str
    server: str
    route: str
    connections: int
    client: str
    result: LoadResult | None = None
    note: str = ""
    #: The server's CPU time during the measured run over its length: ~1.0 when it had the
    #: whole core; clearly less under load means something else took the core (or it waited).
    server_cpu: float | None = None
    #: Which round of the run measured it (``--rounds``); the best round counts.
    round: int = 1
    #: Latency by status seen by ``benchmarks.prober`` beside wrk (refusal-mode runs).
    probe: ProbeResult | None = None


@dataclass(frozen=True)
class Ratio:
    """One of the issue's targets, evaluated on this run's figures."""

    name: str
    value: float | None
    goal: float | None
    unit: str  # "x" (times), "%", or "ms" (a latency: the goal is an upper bound)
    basis: str = ""
    #: Errors (non-2xx answers, socket errors) of the measured side over every round: any
    #: makes the target not met, so that a flood of fast refusals never passes.
    errors: int = 0
    #: Why the measured side has no figure, shown after "not measured".
    why: str = ""
    #: What the figure is when it is not quite what the name says, shown after it.
    detail: str = ""

    @property
    def met(self) -> bool | None:
        """True/False against the goal; None when not measured or when there is no goal."""
        if self.value is None or self.goal is None:
            return None
        if self.unit == "ms":
            return self.value <= self.goal and not self.errors
        return self.value >= self.goal and not self.errors

    def shown(self) -> str:
        """The value as the table prints it."""
        if self.value is None:
            why = self.why.removeprefix("not measured: ").replace("|", "/")
            if len(why) > 100:
                why = why[:99] + "…"
            return f"not measured: {why}" if why else "not measured"
        shown = {"%": f"{self.value * 100:.0f} %",
                 "ms": f"{self.value:,.2f} ms"}.get(self.unit, f"{self.value:.2f}x")
        notes = [part for part in (f"{self.errors} errors" if self.errors else "",
                                   self.detail.replace("|", "/")) if part]
        return f"{shown} ({'; '.join(notes)})" if notes else shown

    def goal_shown(self) -> str:
        """The goal as the table prints it."""
        if self.goal is None:
            return "(reported)"
        if self.unit == "ms":
            return f"<= {self.goal:g} ms"
        return f">= {self.goal * 100:.0f} %" if self.unit == "%" else f">= {self.goal:g}x"


@dataclass
class Report:
    """Everything one ``make bench`` run measured."""

    machine: Mapping[str, str]
    settings: Mapping[str, str]
    measurements: list[Measurement] = field(default_factory=list)
    raw_ort: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    cold_start_s: list[float] = field(default_factory=list)
    cold_start_note: str = ""
    notes: list[str] = field(default_factory=list)
    #: Issue 16: the saturation the probe found and the counts measured past it.
    overload: OverloadPlan | None = None
    #: Why the overload rows have no figures (when ``overload`` is None).
    overload_note: str = ""

    def find(self, workload: str, server: str, route: str, connections: int) -> LoadResult | None:
        """The best result (most requests/s) of one configuration over the rounds, if it ran."""
        best: LoadResult | None = None
        for result in self.results(workload, server, route, connections):
            if best is None or result.rps > best.rps:
                best = result
        return best

    def results(self, workload: str, server: str, route: str,
                connections: int) -> list[LoadResult]:
        """Every round's result of one configuration."""
        key = (workload, server, route, connections)
        return [m.result for m in self.measurements
                if (m.workload, m.server, m.route, m.connections) == key
                and m.result is not None]

    def errors(self, workload: str, server: str, route: str, connections: int) -> int:
        """Errors of one configuration over every round."""
        return sum(r.errors for r in self.results(workload, server, route, connections))

    def why(self, workload: str, server: str, route: str, connections: int) -> str:
        """Why one configuration has no figure: the note of its first run without one."""
        key = (workload, server, route, connections)
        return next((m.note for m in self.measurements
                     if (m.workload, m.server, m.route, m.connections) == key
                     and m.result is None and m.note), "")

    def rps(self, workload: str, server: str, route: str, connections: int) -> float | None:
        """Requests/s of one run, None if it did not run or had errors in every request."""
        result = self.find(workload, server, route, connections)
        return result.rps if result is not None and result.requests else None

    def paired(self, workload: str, route: str, control: str, connections: int
               ) -> float | None:
        """``route`` over ``control`` measured in the same minutes: the median of its pairs.

        The control runs beside the compared runs (the harness runs one before the first and
        after each); each figure of ``route`` divides by the mean of the control runs right
        before and right after it in its round (one when it has only one neighbour), so a
        machine whose speed drifts hits both sides alike (the best-of-rounds rule compares
        figures taken minutes apart). The median over all its pairs (rounds) is the ratio;
        None when no figure of ``route`` has a control beside it.
        """
        ratios = []
        for number in sorted({m.round for m in self.measurements}):
            runs = [(m.route, m.result.rps) for m in self.measurements
                    if (m.workload, m.server, m.connections, m.round)
                    == (workload, FERRY, connections, number)
                    and m.route in (route, control)
                    and m.result is not None and m.result.requests]
            for i, (name, rps) in enumerate(runs):
                if name != route:
                    continue
                before = next((f for n, f in reversed(runs[:i]) if n == control), None)
                after = next((f for n, f in runs[i + 1:] if n == control), None)
                beside = [f for f in (before, after) if f is not None]
                if beside:
                    ratios.append(rps / statistics.fmean(beside))
        return statistics.median(ratios) if ratios else None

    def raw_samples(self, workload: str, batch: int) -> float | None:
        """Raw ONNX Runtime samples/s at one batch size."""
        entry = self.raw_ort.get(workload, {}).get(str(batch))
        return entry["samples_per_s"] if entry else None


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(report: Report) -> list[Ratio]:
    """The issue's targets, in its order, plus the comparison with the seed."""
    out: list[Ratio] = []
    fastapi_64 = report.rps("W1", FASTAPI, PREDICT, 64)
    fastapi_1 = report.rps("W1", FASTAPI, PREDICT, 1)
    for route in (V2_JSON, PREDICT):
        out.append(Ratio(f"W1, 64 conns: ferry {route} / plain FastAPI", _div(
            report.rps("W1", FERRY, route, 64), fastapi_64), 3.0, "x", "requests/s"))
    for route in (V2_JSON, PREDICT):
        out.append(Ratio(f"W1, 1 conn: ferry {route} / plain FastAPI", _div(
            report.rps("W1", FERRY, route, 1), fastapi_1), 2.0, "x", "requests/s"))
    raw64 = report.raw_samples("W2", 64)
    # The W2 goal names no route (its W1 goals name V2 JSON and /predict): it is
    # held against the V2 binary tensor extension, the protocol's form for large tensors.
    # The JSON, /predict and gRPC figures are reported beside it.
    for route, goal in ((V2_BINARY, 0.5), (V2_JSON, None), (PREDICT, None), (GRPC, None)):
        out.append(Ratio(f"W2, 64 conns: ferry {route} / raw ORT batch 64", _div(
            report.rps("W2", FERRY, route, 64), raw64), goal, "%", "requests/s vs samples/s"))
    # Issue 14: the gRPC door against its own transport's ceiling (h2load, 64 connections
    # of one stream each), as the no-op ASGI app is REST's; W1 has the goal, W2 is reported.
    for workload, goal in (("W1", 0.8), ("W2", None)):
        out.append(Ratio(f"{workload}, 64 streams: ferry gRPC / no-op grpc.aio servicer", _div(
            report.rps(workload, FERRY, GRPC, 64), report.rps(workload, NOOP_GRPC, GRPC, 64)),
            goal, "%", "requests/s"))
    # Issue 14: tritonclient.http's request (no Content-Type) as fast as the plain one.
    out.append(Ratio("W1, 64 conns: ferry V2 JSON without Content-Type / with", _div(
        report.rps("W1", FERRY, V2_JSON_NO_TYPE, 64), report.rps("W1", FERRY, V2_JSON, 64)),
        0.95, "%", "requests/s"))
    # Issue 15: authentication and TLS, each variant measured on its own `ferry serve`, paired
    # with the plain control runs right beside it (median of its pairs; without control
    # runs, the plain V2 JSON figure of the run); its errors (a 401 is fast) fail the target.
    plain = report.rps("W1", FERRY, V2_JSON, 64)
    for route, name, goal in ((V2_JSON_API_KEY, "with API key / without", 0.90),
                              (V2_JSON_JWT, "with JWT / without", 0.85),
                              (V2_JSON_TLS, "over TLS / plain", 0.60),
                              (V2_JSON_CONSOLE, "with the console open / closed", 0.97)):
        paired = report.paired("W1", route, V2_JSON_CONTROL, 64)
        out.append(Ratio(f"W1, 64 conns: ferry V2 JSON {name}", paired if paired is not None
                         else _div(report.rps("W1", FERRY, route, 64), plain),
                         goal, "%", "requests/s",
            errors=report.errors("W1", FERRY, route, 64),
            why=report.why("W1", FERRY, route, 64)))
    out += overload_ratios(report)
    for conns in (64, 1):
        out.append(Ratio(f"W1, {conns} conn{'s' if conns > 1 else ''}: ferry /predict / "
                         "FastAPI, typical form", _div(report.rps("W1", FERRY, PREDICT, conns),
                                                      report.rps("W1", FASTAPI_TYPICAL,
                                                                 PREDICT, conns)),
                         None, "x", "requests/s"))
    for conns in (64, 1):
        out.append(Ratio(f"W1, {conns} conn{'s' if conns > 1 else ''}: ferry /predict / "
                         "Flask seed", _div(report.rps("W1", FERRY, PREDICT, conns),
                                            report.rps("W1", FLASK, PREDICT, conns)),
                         None, "x", "requests/s"))
    return out


_MODES = {OVERLOAD_WAIT: "back-pressure", OVERLOAD_REFUSE: "refuse"}


def overload_run(report: Report, server: str, multiple: int
                 ) -> tuple[int | None, Measurement | None, str]:
    """(connections, measured run, why none) of issue 16's run at ``multiple`` x saturating.

    The overload group runs once per benchmark: the first run with a figure is the one.
    """
    plan = report.overload
    if plan is None:
        return None, None, report.overload_note
    conns = plan.connections(multiple)
    if conns is None:
        return None, None, f"{multiple} x is not in the plan"
    key = ("W1", server, V2_JSON, conns)
    run = next((m for m in report.measurements if m.result is not None
                and (m.workload, m.server, m.route, m.connections) == key), None)
    return conns, run, "" if run is not None else report.why(*key)


def overload_peak(report: Report) -> float | None:
    """The peak the goodput ratios divide by: the probe's best 2xx answers/s, or the 1 x
    run's when that is higher (both load the saturated server; a short probe in a slow
    spell must not make later runs look better than the server can do)."""
    if report.overload is None:
        return None
    _, run, _ = overload_run(report, OVERLOAD_WAIT, 1)
    one = run.result.good_rps if run is not None and run.result is not None else 0.0
    return max(report.overload.saturation.peak, one)


def refusal_latency(run: Measurement | None) -> tuple[float | None, int, str, str]:
    """(p99 ms of the 429s the probe client timed, its failed requests, why no figure,
    what the figure is if not that).

    When the probe got no 429 but waited longer than the goal for the answers it did get
    (clients that came during the overload were kept waiting instead of refused), the
    figure is that wait, its slowest status's p99, so the target fails; a probe that got
    no 429 and quick answers measured no refusal.
    """
    if run is None:
        return None, 0, "", ""
    if run.probe is None:
        return None, 0, run.note or "no probe client ran beside wrk", ""
    refused = run.probe.of(429)
    if refused is not None:
        return refused.p99_ms, run.probe.errors, "", ""
    seen = ", ".join(f"{s.status} x{s.count}" for s in run.probe.statuses) or "none"
    slowest = max(run.probe.statuses, key=lambda s: s.p99_ms, default=None)
    if slowest is not None and slowest.p99_ms > REFUSAL_P99_GOAL_MS:
        return slowest.p99_ms, run.probe.errors, "", \
            f"no 429: the p99 of the probe client's answers, {seen}"
    return None, run.probe.errors, f"the probe client got no 429 during the run; its " \
        f"answers: {seen}", ""


def _failures(result: LoadResult | None) -> int:
    """Errors other than refusals: socket errors and statuses outside 2xx and 429."""
    return result.errors - result.answered(429) if result is not None else 0


def overload_ratios(report: Report) -> list[Ratio]:
    """Issue 16: goodput past the saturating count over the peak, refusal latency.

    Goodput (2xx answers/s) at 1 x, 4 x and 16 x the saturating count with default settings
    (back-pressure, the documented choice) over :func:`overload_peak`, whose 4 x and 16 x
    goal is 90 %; the
    same at 4 x and 16 x in refusal mode, reported. Refusals' latency: the p99 of the 429
    answers that the probe client (``benchmarks.prober``, 8 keep-alive connections beside
    wrk's) timed during each refusal-mode run, goal 10 ms ("within a few milliseconds"; see
    :func:`refusal_latency` for a probe that got no 429). 429s are no failure here; socket
    errors, other statuses and the probe's unanswered requests are.
    """
    peak = overload_peak(report)
    out: list[Ratio] = []
    for server, mode, multiples in ((OVERLOAD_WAIT, "defaults: back-pressure", MULTIPLES),
                                    (OVERLOAD_REFUSE, "refusal mode", REFUSE_MULTIPLES)):
        for multiple in multiples:
            _, run, why = overload_run(report, server, multiple)
            result = run.result if run is not None else None
            goal = GOODPUT_GOAL if server == OVERLOAD_WAIT and multiple > 1 else None
            out.append(Ratio(
                f"W1, {multiple} x saturating conns: ferry goodput / peak ({mode})",
                _div(result.good_rps, peak) if result is not None else None, goal, "%",
                "2xx answers/s", errors=_failures(result), why=why))
    for multiple in REFUSE_MULTIPLES:
        _, run, why = overload_run(report, OVERLOAD_REFUSE, multiple)
        value, unanswered, no_figure, detail = refusal_latency(run)
        out.append(Ratio(
            f"W1, {multiple} x saturating conns: refusal mode, p99 latency of a 429",
            value, REFUSAL_P99_GOAL_MS, "ms", "a client timing each answer beside wrk",
            errors=_failures(run.result if run is not None else None) + unanswered,
            why=why or no_figure, detail=detail))
    return out


def zero_error_check(report: Report) -> tuple[int, int]:
    """(errors, runs) over ferry's W1 64-connection REST runs, every round (zero wanted).

    The no-Content-Type V2 JSON runs count too: an answer refused there (415) would
    otherwise make its ratio look fast; so do the API key, JWT and TLS runs (a 401).
    """
    errors = runs = 0
    for route in (V2_JSON, PREDICT, V2_JSON_NO_TYPE, V2_JSON_API_KEY, V2_JSON_JWT,
                  V2_JSON_TLS, V2_JSON_CONSOLE, V2_JSON_CONTROL):
        for result in report.results("W1", FERRY, route, 64):
            runs += 1
            errors += result.errors
    return errors, runs


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def _mark(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[met]


def render(report: Report) -> str:
    """results.md: machine, targets, every load run, raw ORT, cold start, notes."""
    lines = ["# ferry serving benchmark", "",
             "Written by `make bench` (`python -m benchmarks`); do not edit by hand.", ""]
    lines += _machine_section(report)
    lines += _targets_section(report)
    lines += _overload_section(report)
    lines += _runs_section(report.measurements)
    lines += _raw_section(report.raw_ort)
    lines += _cold_section(report)
    if report.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in report.notes] + [""]
    return "\n".join(lines)


def _machine_section(report: Report) -> list[str]:
    m, s = report.machine, report.settings
    return [
        "## Machine and method", "",
        f"- Date: {m.get('date', '?')}",
        f"- CPU: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; "
        f"load average before the run: {m.get('load_before', '?')}",
        f"- OS: {m.get('os', '?')}; Python {m.get('python', '?')}; "
        f"ONNX Runtime {m.get('onnxruntime', '?')}",
        f"- Load generators: {m.get('wrk', '?')} (HTTP/1.1); {m.get('h2load', '?')} (gRPC)",
        *[f"- {key}: {value}" for key, value in s.items()],
        "",
    ]


def _targets_section(report: Report) -> list[str]:
    lines = ["## Targets (ratios from this one run)", "",
             "| target | measured | goal | met |", "|---|---:|---:|:---:|"]
    for r in ratios(report):
        lines.append(f"| {r.name} ({r.basis}) | {r.shown()} | {r.goal_shown()} | "
                     f"{_mark(r.met)} |")
    errors, runs = zero_error_check(report)
    lines.append(f"| W1, 64 conns: ferry REST errors ({runs} runs) | "
                 f"{errors if runs else 'not measured'} | 0 | "
                 f"{_mark(errors == 0 if runs else None)} |")
    cold = max(report.cold_start_s) if report.cold_start_s else None
    lines.append(f"| cold start: `ferry serve` launch to first answer (worst of "
                 f"{len(report.cold_start_s)}) | {_num(cold, 2)} s | <= 1.5 s | "
                 f"{_mark(cold <= 1.5 if cold is not None else None)} |")
    return [*lines, ""]


def _overload_section(report: Report) -> list[str]:
    lines = ["## Overload (issue 16)", ""]
    plan = report.overload
    if plan is None:
        why = report.overload_note
        return [*lines, f"not measured: {why}" if why else "not measured", ""]
    found = plan.saturation
    peak = overload_peak(report)
    probe = ", ".join(
        f"{conns}: {_num(r.good_rps, 0)}" if (r := report.find(
            "W1", OVERLOAD_WAIT, OVERLOAD_PROBE, conns)) is not None else f"{conns}: -"
        for conns in PROBE_CONNECTIONS)
    lines += [
        f"W1 (seed network), V2 JSON, keep-alive clients that resend at once. Saturation "
        f"probe (default settings; 2xx answers/s by connections): {probe}. Peak "
        f"{_num(found.peak, 0)} 2xx/s at {found.peak_connections} connections; the "
        f"saturating count is the smallest probed count reaching "
        f"{SATURATION_SHARE * 100:.0f} % of the peak: **{found.connections}**. % of "
        f"peak: of {_num(peak, 0)} 2xx/s, the larger of that peak and the 1 x run's figure. "
        f"Back-pressure: `ferry serve` with default settings (past `max_queue`, requests "
        f"wait in line); refuse: the same with "
        f"`max_waiting` 0 and `max_queue` {REFUSE_MAX_QUEUE} (429 at once). p50/p99 are "
        f"wrk's, over every answer of the run, 429s included; a 429's own latency is timed "
        f"by one more client beside wrk during the refusal-mode runs (`benchmarks/"
        f"prober.py`: {CONNECTIONS} keep-alive connections resending at once, on wrk's "
        f"core, beside the row's count). Errors: "
        f"socket errors and statuses other than 2xx and 429. Clients that resend at once "
        f"wait, on average, the connection count over the answers per second (Little's "
        f"law): a refusal answered within 10 ms at 1,024 connections takes more than "
        f"100,000 answers/s in all.",
        *([f"Note: {plan.note}."] if plan.note else []), "",
        "| conns | x saturating | mode | 2xx/s | % of peak | 429/s | p50 ms | p99 ms | 429 p50 "
        "ms | 429 p99 ms | errors | note |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for server, multiples in ((OVERLOAD_WAIT, MULTIPLES), (OVERLOAD_REFUSE, REFUSE_MULTIPLES)):
        for multiple in multiples:
            conns, run, why = overload_run(report, server, multiple)
            head = f"| {conns} | {multiple} x | {_MODES[server]} |"
            if run is None or run.result is None:
                lines.append(f"{head} - | - | - | - | - | - | - | - | "
                             f"{why or 'not measured'} |")
                continue
            r = run.result
            refused = run.probe.of(429) if run.probe is not None else None
            share = r.answered(429) / r.requests if r.requests else 0.0
            probed = ("probe client answers by status: " + ", ".join(
                f"{s.status}: {s.count:,}" for s in run.probe.statuses)
                if run.probe is not None else "")
            # Little's law, closed loop with no pause between answer and next request: the
            # mean latency of all answers is the connections over the answers per second.
            mean_ms = 1000 * conns / r.rps if conns and r.rps else None
            note = "; ".join(part for part in (
                f"429s {_pct(share)} of answers", probed,
                f"conns / answers per s = {_num(mean_ms, 1)} ms", run.note) if part)
            lines.append(
                f"{head} {_num(r.good_rps, 0)} | {_pct(_div(r.good_rps, peak))} | "
                f"{_num(r.refused_rps, 0)} | {_num(r.p50_ms, 2)} | {_num(r.p99_ms, 2)} | "
                f"{_num(refused.p50_ms if refused else None, 2)} | "
                f"{_num(refused.p99_ms if refused else None, 2)} | "
                f"{_failures(r) + (run.probe.errors if run.probe else 0)} | {note} |")
    return [*lines, ""]


def _runs_section(measurements: Sequence[Measurement]) -> list[str]:
    lines = ["## Load runs (batch 1, closed loop)", "",
             "| workload | server | route | client | conns | round | req/s | p50 ms | p99 ms |"
             " errors | server CPU | note |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for m in measurements:
        r = m.result
        if r is None:
            lines.append(f"| {m.workload} | {m.server} | {m.route} | {m.client} | "
                         f"{m.connections} | {m.round} | - | - | - | - | - | {m.note} |")
            continue
        note = "; ".join(part for part in (m.note, r.detail) if part)
        lines.append(
            f"| {m.workload} | {m.server} | {m.route} | {m.client} | {m.connections} | "
            f"{m.round} | {_num(r.rps, 0)} | {_num(r.p50_ms, 2)} | {_num(r.p99_ms, 2)} | "
            f"{r.errors} | {_pct(m.server_cpu)} | {note} |")
    return [*lines, ""]


def _raw_section(raw: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[str]:
    lines = ["## Raw ONNX Runtime, in process, one core, one thread (the limit)", "",
             "| workload | batch | samples/s | ms per run |", "|---|---:|---:|---:|"]
    for workload, by_batch in raw.items():
        for batch, figures in sorted(by_batch.items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {workload} | {batch} | {_num(figures['samples_per_s'], 0)} | "
                         f"{_num(figures['ms_per_run'], 3)} |")
    return [*lines, ""]


def _cold_section(report: Report) -> list[str]:
    lines = ["## Cold start", ""]
    if report.cold_start_s:
        runs = ", ".join(f"{s:.2f} s" for s in report.cold_start_s)
        lines.append(f"From launching `ferry serve` (demo model W1) to its first 200 answer to "
                     f"a V2 infer request: {runs}.")
    if report.cold_start_note:
        lines.append(report.cold_start_note)
    if len(lines) == 2:
        lines.append("not measured")
    return [*lines, ""]
