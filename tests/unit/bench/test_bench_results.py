"""results.md: the target ratios and the tables, from measurements made up for the test."""

from __future__ import annotations

import pytest
from benchmarks.loadgen import LoadResult
from benchmarks.machine import cpu_model, os_name
from benchmarks.metrics import grpc_status_counts, non_ok
from benchmarks.results import (
    FASTAPI,
    FERRY,
    FLASK,
    GRPC,
    PREDICT,
    V2_JSON,
    Measurement,
    Report,
    ratios,
    render,
)


def _run(workload: str, server: str, route: str, conns: int, rps: float,
         errors: int = 0) -> Measurement:
    result = LoadResult("wrk", conns, int(rps * 15), 15.0, 1.5, 9.25, errors, "statuses 200: 1")
    return Measurement(workload, server, route, conns, "wrk (HTTP/1.1)", result, server_cpu=0.97)


@pytest.fixture
def report() -> Report:
    r = Report(machine={"cpu": "Test CPU", "cores": "2", "date": "2026-01-01 00:00 UTC"},
               settings={"Method": "pinned"})
    r.measurements += [
        _run("W1", FASTAPI, PREDICT, 64, 5000), _run("W1", FASTAPI, PREDICT, 1, 4000),
        _run("W1", FERRY, PREDICT, 64, 16000), _run("W1", FERRY, V2_JSON, 64, 14000, errors=2),
        _run("W1", FERRY, PREDICT, 1, 9000),
        _run("W1", FLASK, PREDICT, 64, 20),
        _run("W2", FERRY, GRPC, 64, 6000),
        Measurement("W2", FERRY, V2_JSON, 64, "wrk (HTTP/1.1)", note="server did not start"),
    ]
    r.raw_ort["W2"] = {"64": {"samples_per_s": 10000.0, "ms_per_run": 6.4, "runs": 100}}
    r.cold_start_s = [0.9, 1.7, 1.0]
    return r


def test_ratios_follow_the_issue_targets(report: Report) -> None:
    got = {r.name: r for r in ratios(report)}
    predict64 = got["W1, 64 conns: ferry /predict / plain FastAPI"]
    assert predict64.value == pytest.approx(3.2) and predict64.met is True
    v2_64 = got["W1, 64 conns: ferry V2 JSON infer / plain FastAPI"]
    assert v2_64.value == pytest.approx(2.8) and v2_64.met is False
    assert got["W1, 1 conn: ferry /predict / plain FastAPI"].value == pytest.approx(2.25)
    grpc = got["W2, 64 conns: ferry gRPC raw contents / raw ORT batch 64"]
    assert grpc.value == pytest.approx(0.6) and grpc.shown() == "60 %"
    assert grpc.met is None and grpc.goal_shown() == "(reported)"  # the goal is binary's
    assert got["W2, 64 conns: ferry V2 binary infer / raw ORT batch 64"].goal == 0.5
    assert got["W1, 64 conns: ferry /predict / Flask seed"].value == pytest.approx(800.0)


def test_a_ratio_not_measured_never_passes(report: Report) -> None:
    got = {r.name: r for r in ratios(report)}
    missing = got["W2, 64 conns: ferry V2 JSON infer / raw ORT batch 64"]
    assert missing.value is None and missing.met is None
    assert missing.shown() == "not measured"
    assert got["W1, 1 conn: ferry /predict / Flask seed"].met is None  # no Flask 1-conn run


def test_results_md_has_machine_targets_runs_raw_ort_and_cold_start(report: Report) -> None:
    text = render(report)
    assert "CPU: Test CPU, 2 cores" in text
    assert "| W1, 64 conns: ferry /predict / plain FastAPI (requests/s) | 3.20x | >= 3x | yes |" \
        in text
    assert "| 2.80x | >= 3x | **no** |" in text
    assert "| W1, 64 conns: ferry REST errors (2 runs) | 2 | 0 | **no** |" in text
    assert "| W1 | ferry | /predict | wrk (HTTP/1.1) | 64 | 1 | 16,000 | 1.50 | 9.25 | 0 | 97 % |" \
        in text
    assert "| W2 | ferry | V2 JSON infer | wrk (HTTP/1.1) | 64 | 1 | - | - | - | - | - | server " \
           "did not start |" in text
    assert "| W2 | 64 | 10,000 | 6.400 |" in text
    assert "(worst of 3) | 1.70 s | <= 1.5 s | **no** |" in text
    assert "0.90 s, 1.70 s, 1.00 s" in text


def test_empty_report_says_not_measured() -> None:
    text = render(Report(machine={}, settings={}))
    assert "| cold start: `ferry serve` launch to first answer (worst of 0) | - s" in text
    assert text.count("not measured") >= 9


PROMETHEUS = """\
# HELP ferry_requests_total Requests by model, version, protocol and status.
# TYPE ferry_requests_total counter
ferry_requests_total{model="mlp",version="1",protocol="grpc",status="OK"} 120.0
ferry_requests_total{model="mlp",version="1",protocol="grpc",status="RESOURCE_EXHAUSTED"} 3.0
ferry_requests_total{model="mlp",version="1",protocol="rest",status="200"} 7.0
# HELP ferry_request_seconds End to end.
# TYPE ferry_request_seconds histogram
ferry_request_seconds_bucket{model="mlp",protocol="grpc",status="OK",le="+Inf"} 120.0
"""


def test_grpc_statuses_are_read_from_the_server_counter() -> None:
    before = grpc_status_counts(PROMETHEUS)
    assert before == {"OK": 120.0, "RESOURCE_EXHAUSTED": 3.0}
    after = {"OK": 1120.0, "RESOURCE_EXHAUSTED": 5.0, "UNAVAILABLE": 1.0}
    assert non_ok(before, after) == (3, 1000)
    assert grpc_status_counts("# TYPE up gauge\nup 1\n") is None


def test_machine_fields_come_from_proc_and_os_release() -> None:
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n") == "AMD EPYC 7B13"
    assert cpu_model("") == "unknown"
    assert os_name('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n') == \
        "Debian GNU/Linux 12 (bookworm)"


def test_each_figure_is_the_best_of_its_rounds_and_errors_count_in_every_round(
        report: Report) -> None:
    from dataclasses import replace

    slower = replace(_run("W1", FERRY, PREDICT, 64, 12000, errors=3), round=2)
    faster = replace(_run("W1", FASTAPI, PREDICT, 64, 8000), round=2)
    report.measurements += [slower, faster]
    got = {r.name: r for r in ratios(report)}
    # ferry's best round (16,000) over FastAPI's best (8,000, round 2)
    assert got["W1, 64 conns: ferry /predict / plain FastAPI"].value == pytest.approx(2.0)
    text = render(report)
    assert "| W1, 64 conns: ferry REST errors (3 runs) | 5 | 0 | **no** |" in text
    assert "| W1 | ferry | /predict | wrk (HTTP/1.1) | 64 | 2 | 12,000 |" in text
