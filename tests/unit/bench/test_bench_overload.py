"""Issue 16's overload rows: the saturation rule, the plan, goodput and refusal figures.

No load here: the measurements are made up for the test, the way wrk's report reads them.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from benchmarks.loadgen import LoadgenError, LoadResult, parse_wrk
from benchmarks.overload import (
    MULTIPLES,
    REFUSE_MAX_QUEUE,
    Saturation,
    connection_cap,
    plan,
    saturation,
)
from benchmarks.prober import ProbeResult, StatusLatency, parse_probe, probe_command, summarize
from benchmarks.results import (
    OVERLOAD_PROBE,
    OVERLOAD_REFUSE,
    OVERLOAD_WAIT,
    V2_JSON,
    Measurement,
    Report,
    overload_peak,
    overload_ratios,
    ratios,
    render,
)
from benchmarks.run import GROUPS

WRK = "wrk (HTTP/1.1)"


def _wrk_line(statuses: dict[int, int], *, seconds: float = 10.0, p50_us: int = 3000,
              p99_us: int = 9000, read: int = 0, timeout: int = 0) -> str:
    non2xx = sum(n for s, n in statuses.items() if not 200 <= s <= 299)
    shown = ", ".join(f'"{s}": {n}' for s, n in statuses.items())
    return (f'WRK_JSON {{"requests": {sum(statuses.values())}, '
            f'"duration_us": {int(seconds * 1e6)}, "bytes": 1, "p50_us": {p50_us}, '
            f'"p90_us": {p50_us}, "p99_us": {p99_us}, "max_us": {p99_us}, "mean_us": 1.0, '
            f'"non2xx": {non2xx}, "connect": 0, "read": {read}, "write": 0, '
            f'"timeout": {timeout}, "statuses": {{{shown}}}}}')


def _run(server: str, route: str, conns: int, statuses: dict[int, int], **kw: int) -> Measurement:
    return Measurement("W1", server, route, conns, WRK, parse_wrk(_wrk_line(statuses, **kw),
                                                                  conns))


def _probed(run: Measurement, refused_p99: float, errors: int = 0) -> Measurement:
    return replace(run, probe=ProbeResult((StatusLatency(200, 40, 2.0, 3.5),
                                           StatusLatency(429, 2_000, 0.4, refused_p99)), errors))


# ------------------------------------------------------------------ wrk's statuses


def test_goodput_counts_2xx_answers_only_and_refusals_apart() -> None:
    result = parse_wrk(_wrk_line({200: 150_000, 429: 40_000, 503: 10}, read=3, timeout=2), 1024)
    assert result.rps == pytest.approx(19_001.0)  # every answer, refusals included
    assert result.good_rps == pytest.approx(15_000.0)
    assert result.refused_rps == pytest.approx(4_000.0)
    assert result.answered(429) == 40_000 and result.answered(500, 599) == 10
    assert result.socket_errors == 5
    assert result.errors == 40_000 + 10 + 5
    kept = result.with_errors(1, "server: one more")
    assert kept.good_rps == result.good_rps and kept.socket_errors == 5


def test_a_result_without_statuses_has_no_goodput() -> None:
    h2 = LoadResult("h2load", 64, 1000, 1.0, 1.0, 2.0, 0)
    assert h2.good_rps == 0.0 and h2.refused_rps == 0.0


# ------------------------------------------------------------------ the probe client


def test_the_probe_reports_latency_by_status_and_its_line_is_read_back() -> None:
    line = summarize({429: [float(ms) for ms in range(1, 101)], 200: [7.5], 503: []}, errors=2)
    result = parse_probe(f"some warning\n{line}\n")
    assert result.errors == 2
    assert result.of(429) == StatusLatency(429, 100, 50.0, 99.0)  # nearest rank
    assert result.of(200) == StatusLatency(200, 1, 7.5, 7.5)
    assert result.of(503) is None  # no answer with it: no entry


def test_a_probe_without_its_line_is_refused(tmp_path) -> None:
    with pytest.raises(LoadgenError, match="PROBE_JSON"):
        parse_probe("Traceback (most recent call last):\n")
    command = probe_command("python3", "http://127.0.0.1:9/v2/models/d/infer",
                            tmp_path / "b.json", 14.0, delay=0.5)
    assert command[1:3] == ["-m", "benchmarks.prober"]
    assert command[-4:] == ["14", "--delay=0.5", "--connections=8",
                            "--content-type=application/json"]


# ------------------------------------------------------------------ the saturation rule


def test_saturating_count_is_the_smallest_reaching_90_percent_of_the_peak() -> None:
    found = saturation({4: 5_000, 8: 9_000, 16: 15_800, 32: 17_000, 64: 16_500})
    assert found == Saturation(peak=17_000, peak_connections=32, connections=16)
    # 15,299 is just under 90 % of 17,000: the next count saturates
    assert saturation({16: 15_299, 32: 17_000, 64: 16_500}) == Saturation(17_000, 32, 32)


def test_a_tied_peak_is_the_smaller_count_and_a_silent_probe_has_none() -> None:
    assert saturation({8: 10_000, 64: 10_000}) == Saturation(10_000, 8, 8)
    assert saturation({4: 0.0, 8: 0.0}) is None
    assert saturation({}) is None


def test_multiples_are_capped_by_the_open_file_limit_and_say_so() -> None:
    found = Saturation(17_000, 64, 64)
    full = plan(found, connection_cap(20_000, 4096))
    assert full.runs == ((1, 64), (4, 256), (16, 1024)) and full.note == ""
    capped = plan(found, connection_cap(1024, 4096))
    assert capped.runs == ((1, 64), (4, 256), (16, 896))
    assert "16 x capped at 896 connections" in capped.note and "not 1024" in capped.note
    assert capped.connections(16) == 896 and capped.connections(2) is None
    assert connection_cap(100_000, 4096) == 4096  # the server's http_max_connections


def test_the_overload_group_runs_under_make_bench() -> None:
    assert "overload" in GROUPS


# ------------------------------------------------------------------ ratios and results.md


@pytest.fixture
def report() -> Report:
    r = Report(machine={}, settings={})
    r.measurements += [_run(OVERLOAD_WAIT, OVERLOAD_PROBE, c, {200: n * 10})
                       for c, n in ((4, 6_000), (8, 11_000), (16, 16_000), (32, 17_000),
                                    (64, 16_800))]
    r.overload = plan(saturation({c: m.result.good_rps for m in r.measurements
                                  if m.result is not None for c in [m.connections]})
                      or Saturation(0, 0, 0), 4096)
    r.measurements += [
        _run(OVERLOAD_WAIT, V2_JSON, 16, {200: 165_000}, p50_us=900, p99_us=2_500),
        _run(OVERLOAD_WAIT, V2_JSON, 64, {200: 160_000}, p50_us=4_000, p99_us=6_000),
        # 16 x: 85 % of the peak, a few refusals past max_wait_ms: short of the goal
        _run(OVERLOAD_WAIT, V2_JSON, 256, {200: 144_500, 429: 300}, p99_us=120_000),
        _probed(_run(OVERLOAD_REFUSE, V2_JSON, 64, {200: 160_000, 429: 300_000},
                     p99_us=4_000), 1.25),
        # refusals fast enough, but two connections were cut: not met
        _probed(_run(OVERLOAD_REFUSE, V2_JSON, 256, {200: 150_000, 429: 500_000},
                     p99_us=8_500, read=2), 9.5),
    ]
    return r


def test_goodput_ratios_hold_4x_and_16x_to_90_percent_of_the_peak(report: Report) -> None:
    assert report.overload is not None and report.overload.saturation.connections == 16
    got = {r.name: r for r in overload_ratios(report)}
    one = got["W1, 1 x saturating conns: ferry goodput / peak (defaults: back-pressure)"]
    assert one.value == pytest.approx(16_500 / 17_000) and one.met is None  # reported
    four = got["W1, 4 x saturating conns: ferry goodput / peak (defaults: back-pressure)"]
    assert four.value == pytest.approx(16_000 / 17_000) and four.met is True
    sixteen = got["W1, 16 x saturating conns: ferry goodput / peak (defaults: back-pressure)"]
    assert sixteen.value == pytest.approx(0.85) and sixteen.met is False
    assert sixteen.errors == 0  # 429s lower the goodput; they are no error of their own
    refuse4 = got["W1, 4 x saturating conns: ferry goodput / peak (refusal mode)"]
    assert refuse4.goal is None and refuse4.value == pytest.approx(16_000 / 17_000)


def test_a_1x_run_above_the_probes_peak_becomes_the_peak(report: Report) -> None:
    # the probe ran in a slow spell: 20,000 2xx/s at 1 x is what the server can do
    report.measurements[5] = _run(OVERLOAD_WAIT, V2_JSON, 16, {200: 200_000})
    assert overload_peak(report) == pytest.approx(20_000)
    got = {r.name: r for r in overload_ratios(report)}
    assert got["W1, 1 x saturating conns: ferry goodput / peak (defaults: back-pressure)"
               ].value == pytest.approx(1.0)
    four = got["W1, 4 x saturating conns: ferry goodput / peak (defaults: back-pressure)"]
    assert four.value == pytest.approx(0.8) and four.met is False
    assert "| 64 | 4 x | back-pressure | 16,000 | 80 % |" in render(report)


FOUR = "W1, 4 x saturating conns: refusal mode, p99 latency of a 429"
SIXTEEN = "W1, 16 x saturating conns: refusal mode, p99 latency of a 429"


def test_refusal_latency_is_the_probes_429s_held_to_10_ms(report: Report) -> None:
    got = {r.name: r for r in ratios(report)}
    four = got[FOUR]
    assert four.value == pytest.approx(1.25) and four.met is True  # not wrk's 4 ms
    assert (four.shown(), four.goal_shown()) == ("1.25 ms", "<= 10 ms")
    sixteen = got[SIXTEEN]
    assert sixteen.value == pytest.approx(9.5)
    assert sixteen.errors == 2 and sixteen.met is False  # the cut connections
    assert sixteen.shown() == "9.50 ms (2 errors)"


def test_slow_refusals_fail_and_no_refusal_or_no_probe_is_not_measured(report: Report) -> None:
    report.measurements[-2] = _probed(report.measurements[-2], 530.0, errors=0)
    got = {r.name: r for r in overload_ratios(report)}
    assert got[FOUR].value == pytest.approx(530.0) and got[FOUR].met is False
    run = report.measurements[-1]
    assert run.probe is not None
    report.measurements[-1] = replace(run, probe=ProbeResult((run.probe.statuses[0],), 3))
    sixteen = {r.name: r for r in overload_ratios(report)}[SIXTEEN]
    assert sixteen.value is None and sixteen.met is None  # quick 200s: nothing was refused
    assert sixteen.shown() == "not measured: the probe client got no 429 during the run; " \
        "its answers: 200 x40"
    # no 429, but the probe's connections waited seconds for a 200: that wait fails
    starved = ProbeResult((StatusLatency(200, 8, 4_400.0, 4_496.0),))
    report.measurements[-1] = replace(run, probe=starved)
    sixteen = {r.name: r for r in overload_ratios(report)}[SIXTEEN]
    assert sixteen.value == pytest.approx(4_496.0) and sixteen.met is False
    assert sixteen.shown() == "4,496.00 ms (2 errors; no 429: the p99 of the probe client's " \
        "answers, 200 x8)"
    report.measurements[-1] = replace(run, probe=None, note="the refusal probe failed: boom")
    sixteen = {r.name: r for r in overload_ratios(report)}[SIXTEEN]
    assert sixteen.shown() == "not measured: the refusal probe failed: boom"


def test_results_md_has_the_overload_table_beside_the_targets(report: Report) -> None:
    text = render(report)
    section = text[text.index("## Overload (issue 16)"):text.index("## Load runs")]
    assert "4: 6,000, 8: 11,000, 16: 16,000, 32: 17,000, 64: 16,800" in section
    assert "Peak 17,000 2xx/s at 32 connections" in section and "**16**" in section
    assert f"`max_queue` {REFUSE_MAX_QUEUE}" in section
    assert "| 256 | 16 x | back-pressure | 14,450 | 85 % | 30 | 3.00 | 120.00 | - | - | 0 | " \
        "429s 0 % of answers; conns / answers per s = 17.7 ms |" in section
    assert "| 256 | 16 x | refuse | 15,000 | 88 % | 50,000 | 3.00 | 8.50 | 0.40 | 9.50 | 2 | " \
        "429s 77 % of answers; probe client answers by status: 200: 40, 429: 2,000; " \
        "conns / answers per s = 3.9 ms |" in section
    assert f"| {SIXTEEN} (a client timing each answer beside wrk) | 9.50 ms (2 errors) | " \
        "<= 10 ms | **no** |" in text
    # the probe and goodput runs are in the load runs table too
    assert f"| W1 | {OVERLOAD_WAIT} | {OVERLOAD_PROBE} | {WRK} | 32 | 1 | 17,000 |" in text


def test_a_missing_run_and_a_missing_group_say_why(report: Report) -> None:
    report.measurements[-1] = Measurement("W1", OVERLOAD_REFUSE, V2_JSON, 256, WRK,
                                          note="server did not start")
    text = render(report)
    assert "| 256 | 16 x | refuse | - | - | - | - | - | - | - | - | server did not start |" \
        in text
    empty = Report(machine={}, settings={}, overload_note="`ferry serve` is not available")
    text = render(empty)
    assert "## Overload (issue 16)\n\nnot measured: `ferry serve` is not available" in text
    rows = overload_ratios(empty)
    assert len(rows) == len(MULTIPLES) + 2 * 2
    assert all(r.value is None and r.met is None for r in rows)
    assert all("not available" in r.shown() for r in rows)
