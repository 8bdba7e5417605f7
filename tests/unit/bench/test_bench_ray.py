"""benchmarks/ray_bench.py: the goal's verdict and its report (no timing asserted)."""

from __future__ import annotations

from benchmarks.loadgen import LoadResult
from benchmarks.ray_bench import KINDS, Run, render, verdict
from benchmarks.run import GROUPS


def _run(kind: str, rps: float | None, why: str = "") -> Run:
    if rps is None:
        return Run(KINDS[kind], None, why)
    requests = int(rps * 10)
    return Run(KINDS[kind], LoadResult("wrk", 64, requests, 10.0, 5.0, 9.0, 0,
                                       statuses=((200, requests),)))


def _runs(ferry: float | None, plain: float, scaled: float, noop: float) -> dict[str, Run]:
    return {"ferry": _run("ferry", ferry, "did not start"), "plain": _run("plain", plain),
            "plain-256": _run("plain-256", scaled), "noop": _run("noop", noop),
            "noop-unread": _run("noop-unread", noop * 2)}


def test_three_times_plain_meets_the_goal():
    line = verdict(_runs(300, 100, 290, 1000))
    assert "= 3.00x plain as Ray's docs write it" in line
    assert "1.03x plain with max_ongoing_requests 256" in line
    assert line.endswith(": met")


def test_eighty_percent_of_the_noop_meets_it_where_the_proxy_caps_both():
    assert verdict(_runs(80, 70, 75, 100)).endswith("80% of the no-op ceiling (goal 80% "
                                                   "where the proxy caps both): met")


def test_below_both_is_not_met():
    assert verdict(_runs(150, 100, 140, 200)).endswith("NOT met")


def test_a_missing_run_is_not_measured_never_met():
    runs = _runs(None, 100, 140, 200)
    assert verdict(runs).startswith("not measured")
    text = render(runs, duration=5, machine={"cpu": "test"})
    assert "| not measured: did not start |" in text
    assert "Machine: cpu: test" in text


def test_the_report_lists_every_deployment_and_the_group_runs_it():
    text = render(_runs(120, 7, 115, 110), duration=5, machine={"cpu": "test"})
    for name in KINDS.values():
        assert f"| {name} |" in text
    assert "ray" in GROUPS
