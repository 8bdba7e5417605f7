"""benchmarks/optimize_bench.py: its profile reading, goals and report (no timing asserted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from benchmarks.optimize_bench import (
    CNN,
    DYNAMIC,
    MLP,
    PARENT,
    PRUNED,
    STATIC,
    OptimizeBench,
    Profile,
    Served,
    Version,
    best_runs,
    binary_body,
    goal_rows,
    op_times,
    profile,
    render,
)
from benchmarks.run import GROUPS

from optimize_models import mlp_from_layers


def _latency(b1: float, b32: float) -> dict[str, dict[str, float]]:
    return {"1": {"p50": b1, "p99": b1 * 2}, "32": {"p50": b32, "p99": b32 * 2}}


def _version(label: str, b32: float, parent_b32: float = 10.0, model: str = MLP) -> Version:
    return Version(model, label, f"big:{len(label)}", file_bytes=4096, parameters=1000,
                   flops=2_000_000, latency_ms=_latency(0.5, b32),
                   parent_latency_ms=_latency(1.0, parent_b32), agreement=0.995,
                   accuracy=0.95)


def _result(dynamic: float, static: float, pruned: float, served: tuple[float, float]
            ) -> OptimizeBench:
    return OptimizeBench(
        versions=[_version(PARENT, 10.0), _version(DYNAMIC, dynamic), _version(STATIC, static),
                  _version(PRUNED, pruned), _version(PARENT, 2.0, 2.0, CNN),
                  Version(CNN, "FP16", "", error="ConversionError: float16 converter failed")],
        served=[Served(PARENT, "big:1", served[0], 5.0, 9.0), Served(DYNAMIC, "big:2", served[1],
                                                                      3.0, 6.0)],
        profiles=[Profile(PARENT, 50, (("MatMul", 9.0), ("Relu", 0.5), ("Add", 0.5))),
                  Profile(DYNAMIC, 50, (("MatMulInteger", 6.0),
                                        ("DynamicQuantizeLinear", 2.0), ("Cast", 1.0)))],
    )


def test_the_group_runs_with_make_bench():
    assert "optimize" in GROUPS


def test_op_times_sums_kernel_events_per_run_by_operator_type():
    events = [
        {"cat": "Session", "name": "model_run", "dur": 99_000},
        {"cat": "Node", "name": "mm0_kernel_time", "dur": 3000, "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "mm1_kernel_time", "dur": 1000, "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "mm0_fence_before", "dur": 7000, "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "r0_kernel_time", "dur": 200, "args": {"op_name": "Relu"}},
    ]
    assert op_times(events, runs=2) == (("MatMul", 2.0), ("Relu", 0.1))


def test_a_real_profile_names_the_models_operators(tmp_path: Path):
    rng = np.random.default_rng(0)
    model = mlp_from_layers(tmp_path / "m.onnx", [rng.normal(size=(8, 16)),
                                                  rng.normal(size=(16, 3))],
                            [np.zeros(16), np.zeros(3)])
    got = profile("p", model, {"x": rng.normal(size=(4, 8)).astype(np.float32)},
                  tmp_path / "profiles", runs=5)
    assert got.runs == 5
    ops = {op for op, _ in got.ops}  # ONNX Runtime fuses MatMul + Add (+ Relu) into Gemm
    assert any("Gemm" in op or "MatMul" in op for op in ops), ops
    assert got.total_ms > 0


def test_goals_take_the_faster_int8_and_the_same_calls_parent():
    rows = goal_rows(_result(dynamic=7.0, static=5.5, pruned=4.0, served=(100.0, 150.0)))
    assert rows[0][1] == "static INT8: 0.55 x" and rows[0][2] is True
    assert rows[1][1] == "0.40 x" and rows[1][2] is True
    assert rows[2][1] == "150 vs 100 req/s = 1.50 x" and rows[2][2] is True


def test_missed_targets_say_not_met_and_point_at_the_profile():
    text = render(_result(dynamic=7.0, static=8.0, pruned=6.5, served=(100.0, 120.0)),
                  {"cpu": "Test CPU", "cores": "2"}, seconds=1.0, rounds=2, duration=5.0)
    assert text.count("**not met**") == 3
    assert "Machine: cpu Test CPU; cores 2" in text
    assert "Targets not met:" in text
    assert "| DynamicQuantizeLinear |  | 2.000 |" in text
    assert "dynamic INT8: its kernels take 0.90 x the parent's; 22% of its kernel time" in text
    assert "MatMulInteger takes 67%." in text
    assert "| FP16 | failed: ConversionError: float16 converter failed |" in text
    assert f"### {CNN}" in text and f"### {MLP}" in text
    assert "| dynamic INT8 (`big:12`) | 4 | 1,000 | 2.00 | 0.500 | 1.000 | 7.000 | 14.000 | " \
           "0.70 x | 99.50% | 95.00% |" in text


def test_a_failed_serve_is_not_measured_with_its_reason():
    result = _result(dynamic=5.0, static=5.0, pruned=5.0, served=(0.0, 0.0))
    result.served = [Served(PARENT, "big:1", note="ferry serve exited 1"),
                     Served(DYNAMIC, "big:2", note="ferry serve exited 1")]
    rows = goal_rows(result)
    assert rows[2][2] is None and "ferry serve exited 1" in rows[2][1]
    assert "| not measured |" in render(result, {}, seconds=1, rounds=1, duration=1)


def test_the_binary_body_is_a_json_header_then_the_row():
    body, length = binary_body([0.5] * 784)
    assert body[length:] == np.full(784, 0.5, np.float32).tobytes()
    assert b'"binary_data_size": 3136' in body[:length]


def test_the_readme_quotes_the_results_file():
    root = Path(__file__).resolve().parents[3]
    readme = (root / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Optimize\n")
    section = readme[start:readme.index("\n## ", start + 1)]
    results = (root / "benchmarks" / "results-optimize.md").read_text(encoding="utf-8")
    assert "benchmarks/results-optimize.md" in section
    goals = results[results.index("## Goals"):results.index("\n## In-process")]
    mlp = results[results.index(f"### {MLP}"):results.index(f"### {CNN}")]
    quoted = [line for line in (goals + mlp).splitlines() if line.startswith("| ")]
    assert len(quoted) >= 10
    for line in quoted:  # the goals and the MLP's table, word for word
        assert line in section, line


def test_each_version_keeps_its_best_served_run_and_a_failure_shows():
    runs = [Served(PARENT, "big:1", 100.0), Served(DYNAMIC, "big:2", 150.0),
            Served(DYNAMIC, "big:2", 170.0), Served(PARENT, "big:1", 90.0),
            Served(PARENT, "big:1", note="wrk exited 1")]
    kept = best_runs(runs)
    assert [(s.label, s.rps, s.note) for s in kept] == [(PARENT, 0.0, "wrk exited 1"),
                                                        (DYNAMIC, 170.0, "")]


def test_the_benchmark_notes_a_failed_optimize_group(tmp_path: Path, monkeypatch):
    from benchmarks import optimize_bench
    from benchmarks.run import Bench, Options

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("training failed\nmore")

    monkeypatch.setattr(optimize_bench, "run", fail)
    bench = Bench(Options(duration=1, warmup=0, workdir=tmp_path, out=tmp_path / "r.md",
                          groups=frozenset({"optimize"}), connections=(64,), cold_runs=0))
    bench.optimize_versions()
    assert bench.report.notes[-1] == "Optimize (issue 18): not measured: training failed"


def test_the_served_section_splits_an_answers_time_into_model_and_transport():
    text = render(_result(dynamic=1.6, static=2.0, pruned=4.0, served=(1000.0, 1250.0)), {},
                  seconds=1, rounds=1, duration=1)
    assert ("Server core time: parent (FP32) 1.000 ms per answer, of which the model 0.312 ms "
            "per row in-process (batch 32); dynamic INT8 0.800 ms per answer, of which the "
            "model 0.050 ms per row") in text
    assert "The rest, 0.688 and 0.750 ms, is ferry's transport" in text
