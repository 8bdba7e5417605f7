"""Issue 14's rows of results.md: ferry's gRPC door against the no-op grpc.aio servicer, and
the tritonclient-style V2 JSON request (no Content-Type) against the plain one."""

from __future__ import annotations

import pytest
from benchmarks.loadgen import LoadResult
from benchmarks.results import (
    FERRY,
    GRPC,
    NOOP_GRPC,
    V2_JSON,
    V2_JSON_NO_TYPE,
    Measurement,
    Report,
    ratios,
    render,
)

GRPC_W1 = "W1, 64 streams: ferry gRPC / no-op grpc.aio servicer"
GRPC_W2 = "W2, 64 streams: ferry gRPC / no-op grpc.aio servicer"
NO_TYPE = "W1, 64 conns: ferry V2 JSON without Content-Type / with"


def _run(workload: str, server: str, route: str, conns: int, rps: float, errors: int = 0,
         round: int = 1) -> Measurement:
    result = LoadResult("x", conns, int(rps * 10), 10.0, 1.0, 2.0, errors)
    return Measurement(workload, server, route, conns, "x", result, round=round)


@pytest.fixture
def report() -> Report:
    r = Report(machine={}, settings={})
    r.measurements += [
        _run("W1", FERRY, GRPC, 64, 1600), _run("W1", NOOP_GRPC, GRPC, 64, 2000),
        _run("W1", FERRY, GRPC, 1, 900), _run("W1", NOOP_GRPC, GRPC, 1, 100),
        _run("W2", FERRY, GRPC, 64, 300), _run("W2", NOOP_GRPC, GRPC, 64, 1200),
        _run("W1", FERRY, V2_JSON, 64, 10000), _run("W1", FERRY, V2_JSON_NO_TYPE, 64, 9400),
        _run("W1", FERRY, V2_JSON_NO_TYPE, 64, 9000, errors=4, round=2),
    ]
    return r


def test_grpc_ceiling_rows(report: Report) -> None:
    got = {r.name: r for r in ratios(report)}
    w1, w2 = got[GRPC_W1], got[GRPC_W2]
    assert w1.value == pytest.approx(0.8) and w1.goal == 0.8 and w1.met is True
    assert w1.shown() == "80 %" and w1.goal_shown() == ">= 80 %"
    assert w2.value == pytest.approx(0.25) and w2.goal is None and w2.met is None
    assert w2.goal_shown() == "(reported)"
    report.measurements.append(_run("W1", NOOP_GRPC, GRPC, 64, 2100, round=2))
    below = {r.name: r for r in ratios(report)}[GRPC_W1]  # the ceiling's best round counts
    assert below.value == pytest.approx(1600 / 2100) and below.met is False


def test_no_content_type_row_and_its_errors(report: Report) -> None:
    row = {r.name: r for r in ratios(report)}[NO_TYPE]
    assert row.value == pytest.approx(0.94) and row.goal == 0.95 and row.met is False
    text = render(report)
    assert f"| {NO_TYPE} (requests/s) | 94 % | >= 95 % | **no** |" in text
    assert f"| {GRPC_W1} (requests/s) | 80 % | >= 80 % | yes |" in text
    assert f"| {GRPC_W2} (requests/s) | 25 % | (reported) | - |" in text
    # the no-Content-Type runs count in the REST error row (an answer 415 is fast)
    assert "| W1, 64 conns: ferry REST errors (3 runs) | 4 | 0 | **no** |" in text
    assert "| W1 | no-op, grpc.aio servicer | gRPC raw contents | x | 64 | 1 | 2,000 |" in text


def test_rows_without_the_ceiling_or_the_plain_run_are_not_measured() -> None:
    r = Report(machine={}, settings={})
    r.measurements += [_run("W1", FERRY, GRPC, 64, 1600),
                       _run("W1", FERRY, V2_JSON_NO_TYPE, 64, 9400),
                       _run("W1", NOOP_GRPC, GRPC, 1, 2000)]  # 1 stream: not the row's
    got = {x.name: x for x in ratios(r)}
    for name in (GRPC_W1, GRPC_W2, NO_TYPE):
        assert got[name].value is None and got[name].met is None
        assert got[name].shown() == "not measured"
