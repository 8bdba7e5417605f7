"""Optimized versions beside their parent (issue 18's benchmark), on one core.

Two models are trained here on the bundled digits (``tests/optimize_models.py``, the builders
the optimize tests use): the larger MLP (784-2048-2048-10 on the digits drawn 28x28) and a
small CNN (two 3x3 convolutions, max pool, two dense layers, with torch). Each is imported with
``ferry.formats.import_model`` and optimized with ``ferry.optimize.optimize_version`` into five
versions: dynamic INT8, static INT8 (calibrated on 256 training rows), FP16, fused, and 50 %
structured pruning (not retrained: its accuracy is reported, never refused).

Then, pinned to core 0 (``os.sched_setaffinity``; one intra-op thread):

* in-process latency p50/p99 at batch 1 and 32 of every version beside its parent
  (``ferry.optimize.compare_versions``, each pair in the same call) in ``--rounds`` rounds;
  each version's figures are its best round's, its ratio is to the parent measured in that
  same call; quality (top-1 agreement, accuracy) on the digits test split;
* ONNX Runtime's profile (``SessionOptions.enable_profiling``) of the MLP's parent and INT8
  versions at batch 32: time per operator type, which explains a missed target.

Last, ``ferry serve`` (core 0) serves the MLP's parent and its dynamic INT8 version
(``version_policy``), and wrk (core 1, ``wrk/post.lua``) sends V2 binary requests of one row
on 64 connections to each version in turn. Run alone (writes
benchmarks/results-optimize.md)::

    python -m benchmarks.optimize_bench                           # ~5 minutes
    python -m benchmarks.optimize_bench --seconds 0.5 --duration 5 --out /tmp/o.md

or as the ``optimize`` group of ``python -m benchmarks`` (run once, after the rounds).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import loadgen, processes
from benchmarks.processes import LOAD_CORE, SERVER_CORE

ROOT = Path(__file__).resolve().parent.parent
#: Where tests/optimize_models.py (the models' builders, shared with the tests) lives.
TESTS = ROOT / "tests"
#: Goals of issue 18 (the larger MLP, batch 32, one core).
GOAL_INT8 = 0.6
GOAL_PRUNED = 0.6
GOAL_SERVED = 1.3
BATCH = "32"
CONNECTIONS = 64
MLP = "MLP 784-2048-2048-10"
CNN = "CNN conv16-conv32-pool-128-10"
PARENT = "parent (FP32)"
DYNAMIC, STATIC, PRUNED = "dynamic INT8", "static INT8", "pruned 50 % structured"
#: Each optimized version: its label and ``OptimizeOptions`` fields (static adds calibration).
STEPS: tuple[tuple[str, dict[str, Any]], ...] = (
    (DYNAMIC, {"quantize": "dynamic"}),
    (STATIC, {"quantize": "static"}),
    ("FP16", {"quantize": "fp16"}),
    ("fused", {"fuse": True}),
    (PRUNED, {"prune": 0.5, "structured": True}),
)
#: Operators that only convert between float and integer (the cost INT8 adds).
CONVERSION_OPS = frozenset({"DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"})


@dataclass
class Version:
    """One version of one model as measured: figures, and its parent's best beside them."""

    model: str
    label: str
    ref: str
    file_bytes: int = 0
    parameters: int = 0
    flops: int = 0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    parent_latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    agreement: float | None = None
    accuracy: float | None = None
    error: str = ""

    def ratio(self, batch: str = BATCH) -> float | None:
        """p50 latency over the parent's (each one's best round); None if not measured."""
        if self.error or batch not in self.latency_ms or batch not in self.parent_latency_ms:
            return None
        return self.latency_ms[batch]["p50"] / self.parent_latency_ms[batch]["p50"]


@dataclass(frozen=True)
class Served:
    """One wrk run against one version served by ``ferry serve``."""

    label: str
    ref: str
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    note: str = ""


@dataclass(frozen=True)
class Profile:
    """ONNX Runtime's kernel time per operator type, in ms per run."""

    label: str
    runs: int
    ops: tuple[tuple[str, float], ...]

    @property
    def total_ms(self) -> float:
        """Kernel time of one run."""
        return sum(ms for _, ms in self.ops)

    def share(self, names: Iterable[str]) -> float:
        """The share (0..1) of the kernel time spent in the operator types ``names``."""
        wanted = set(names)
        total = self.total_ms
        return sum(ms for op, ms in self.ops if op in wanted) / total if total else 0.0


@dataclass
class OptimizeBench:
    """What one run measured."""

    versions: list[Version] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def find(self, model: str, label: str) -> Version | None:
        """The row of ``label`` for ``model``."""
        return next((v for v in self.versions if v.model == model and v.label == label), None)

    def served_ratio(self) -> float | None:
        """The INT8 version's requests/s over the parent's (None unless both ran clean)."""
        runs = {s.label: s for s in self.served}
        parent, int8 = runs.get(PARENT), runs.get(DYNAMIC)
        if parent is None or int8 is None or not parent.rps or parent.note or int8.note:
            return None
        return int8.rps / parent.rps


def log(message: str) -> None:
    """Progress on stderr, with the time."""
    print(f"[optimize {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- profiles


def op_times(events: Iterable[dict[str, Any]], runs: int) -> tuple[tuple[str, float], ...]:
    """Kernel ms per run by operator type from ONNX Runtime's profile events, largest first.

    Node events (``cat`` "Node") named ``*_kernel_time`` carry ``dur`` in µs and the operator
    type in ``args.op_name``; the session's own events are left out.
    """
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        op = str(event.get("args", {}).get("op_name", "?"))
        totals[op] = totals.get(op, 0.0) + float(event.get("dur", 0))
    ms = ((op, total / 1000.0 / max(runs, 1)) for op, total in totals.items())
    return tuple(sorted(ms, key=lambda item: -item[1]))


def profile(label: str, artifact: Path, feed: dict[str, Any], workdir: Path, *,
            runs: int = 50) -> Profile:
    """Profile ``runs`` runs of ``feed`` on one intra-op thread (the first run, which
    allocates, is one of them)."""
    import onnxruntime as ort

    workdir.mkdir(parents=True, exist_ok=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / "ort-profile")
    session = ort.InferenceSession(str(artifact), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, feed)
    path = Path(session.end_profiling())
    events = json.loads(path.read_text(encoding="utf-8"))
    return Profile(label, runs, op_times(events, runs))


# ------------------------------------------------------------------------------- measuring


def _builders() -> Any:
    """tests/optimize_models.py, the builders the optimize tests train the same models with."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return importlib.import_module("optimize_models")


def prepare(workdir: Path, *, epochs: int = 6) -> tuple[Any, dict[str, tuple[str, Any, Any]]]:
    """Train and import both models; returns the repository and, per model, its name, eval
    data and calibration rows."""
    from ferry.demo import load_seed_data
    from ferry.formats import ImportOptions, import_model
    from ferry.optimize import EvalData
    from ferry.repository import Repository

    models = _builders()
    data = load_seed_data()
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "repository"
    if root.exists():
        import shutil

        shutil.rmtree(root)
    repo = Repository(root)
    log(f"training the {MLP} ({epochs} epochs, scikit-learn)")
    mlp, mlp_accuracy = models.train_digits_mlp(workdir / "big.onnx", data, epochs=epochs)
    log(f"training the {CNN} (torch)")
    cnn, cnn_accuracy = models.train_digits_cnn(workdir / "cnn.onnx", data)
    log(f"accuracy on the test split: MLP {mlp_accuracy:.2%}, CNN {cnn_accuracy:.2%}")
    x784 = models.digits_784(data.x_test)
    import_model(repo, mlp, "big", options=ImportOptions(samples=x784))
    import_model(repo, cnn, "cnn", options=ImportOptions(samples=data.x_test))
    split = "the digits test split"
    return repo, {
        MLP: ("big", EvalData({"x": x784}, data.y_test, split),
              {"x": models.digits_784(data.x_train[:256])}),
        CNN: ("cnn", EvalData({"x": data.x_test}, data.y_test, split),
              {"x": data.x_train[:256]}),
    }


def make_versions(repo: Any, models: dict[str, tuple[str, Any, Any]]) -> list[Version]:
    """``optimize_version`` of each step on each model's version 1; a failure is a row."""
    from ferry.errors import FerryError
    from ferry.optimize import OptimizeOptions

    made: list[Version] = []
    for model, (name, data, calibration) in models.items():
        made.append(Version(model, PARENT, f"{name}:1"))
        for label, fields in STEPS:
            extra = {"calibration": calibration} if fields.get("quantize") == "static" else {}
            options = OptimizeOptions(**fields, **extra, eval=data, threads=1,
                                      timing_seconds=0.05, max_drop=100.0)
            log(f"{model}: {label}")
            try:
                result = optimize_version(repo, f"{name}:1", options)
            except FerryError as exc:
                made.append(Version(model, label, "", error=str(exc).splitlines()[0][:200]))
                continue
            made.append(Version(model, label, f"{name}:{result.manifest.version}"))
    return made


def optimize_version(repo: Any, ref: str, options: Any) -> Any:
    """``ferry.optimize.optimize_version`` (a seam for the module's tests)."""
    from ferry import optimize

    return optimize.optimize_version(repo, ref, options)


def measure(repo: Any, models: dict[str, tuple[str, Any, Any]], versions: list[Version], *,
            seconds: float, rounds: int) -> None:
    """Each version beside its parent (``compare_versions``, one thread), ``rounds`` times;
    fills the rows in place: each version's best round at batch 32, and the parent's best
    of all its calls (so a slow spell of the shared machine never flatters a version)."""
    from ferry.errors import FerryError
    from ferry.optimize import compare_versions

    for number in range(1, rounds + 1):
        order = versions if number % 2 else versions[::-1]
        for v in order:
            if v.label == PARENT or v.error:
                continue
            name, data, _ = models[v.model]
            log(f"round {number}: {v.model} {v.label} ({v.ref}) beside {name}:1")
            try:
                report = compare_versions(repo, f"{name}:1", v.ref, eval=data, threads=1,
                                          timing_seconds=seconds)
            except FerryError as exc:
                v.error = f"not measured: {_first_line(exc)}"
                continue
            after, before = report.after.latency_ms, report.before.latency_ms
            if not v.latency_ms or after[BATCH]["p50"] < v.latency_ms[BATCH]["p50"]:
                v.latency_ms = after
            v.file_bytes, v.parameters, v.flops = (report.after.file_bytes,
                                                   report.after.parameters, report.after.flops)
            q = report.quality
            v.agreement, v.accuracy = q.top1_agreement, q.accuracy_after
            parent = next(p for p in versions if p.model == v.model and p.label == PARENT)
            parent.file_bytes, parent.parameters, parent.flops = (
                report.before.file_bytes, report.before.parameters, report.before.flops)
            parent.accuracy, parent.agreement = q.accuracy_before, 1.0
            if not parent.latency_ms or before[BATCH]["p50"] < parent.latency_ms[BATCH]["p50"]:
                parent.latency_ms = before
    for v in versions:
        parent = next(p for p in versions if p.model == v.model and p.label == PARENT)
        v.parent_latency_ms = parent.latency_ms


def profiles(repo: Any, models: dict[str, tuple[str, Any, Any]], versions: list[Version],
             workdir: Path) -> list[Profile]:
    """ONNX Runtime's profile of the MLP's parent and INT8 versions at batch 32."""
    import numpy as np

    _, data, _ = models[MLP]
    x = data.inputs["x"]
    feed = {"x": x[np.arange(int(BATCH)) % len(x)]}
    found = []
    for v in versions:
        if v.model == MLP and v.label in (PARENT, DYNAMIC, STATIC) and not v.error:
            log(f"profiling {v.label} ({v.ref}) at batch {BATCH}")
            found.append(profile(v.label, repo.open(v.ref).artifact_path, feed,
                                 workdir / "profiles" / v.label.split()[0]))
    return found


# ------------------------------------------------------------------------------- serving


def binary_body(values: Any) -> tuple[bytes, int]:
    """A V2 infer body of one FP32 row ``x`` as binary tensor data (JSON answer asked for),
    and its JSON header's length."""
    import numpy as np

    raw = np.asarray(values, dtype=np.float32).reshape(1, -1).tobytes()
    tensor = {"name": "x", "shape": [1, len(raw) // 4], "datatype": "FP32",
              "parameters": {"binary_data_size": len(raw)}}
    header = json.dumps({"inputs": [tensor],
                         "parameters": {"binary_data_output": False}}).encode()
    return header + raw, len(header)


def _ferry() -> list[str]:
    script = Path(sys.executable).parent / "ferry"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from ferry.cli import main; sys.exit(main())"]


def serve_runs(repo: Any, versions: list[Version], values: Any, workdir: Path, *,
               seconds: float, warmup: float, rounds: int = 2) -> list[Served]:
    """``ferry serve`` of the MLP's parent and dynamic INT8 version; wrk on each in turn,
    ``rounds`` times in alternating order; each version's best run (a failed run wins)."""
    chosen = [v for v in versions if v.model == MLP and v.label in (PARENT, DYNAMIC)
              and not v.error]
    name = "big"
    numbers = [v.ref.split(":")[1] for v in chosen]
    (repo.root / name / "config.toml").write_text(
        f'version_policy = "{",".join(numbers)}"\n', encoding="utf-8")
    http_port, grpc_port = processes.free_port(), processes.free_port()
    base = f"http://127.0.0.1:{http_port}"
    command = [*_ferry(), "serve", str(repo.root), "--models", name, "--host", "127.0.0.1",
               "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--workers", "1"]
    service = processes.Service("ferry-optimize", command, core=SERVER_CORE,
                                log=workdir / "logs" / "ferry-optimize.log")
    body, header_length = binary_body(values)
    path = workdir / "bodies" / "v2-binary.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    served: list[Served] = []
    log(f"ferry serve {name} (versions {', '.join(numbers)}) on :{http_port}, core "
        f"{SERVER_CORE}")
    try:
        def ready() -> bool:
            return processes.http_get(f"{base}/v2/health/ready", timeout=2)[0] == 200

        with processes.running(service, ready, timeout=180):
            for number, v in _alternating(chosen, rounds):
                url = f"{base}/v2/models/{name}/versions/{v.ref.split(':')[1]}/infer"
                expected = _expected(repo.open(v.ref).artifact_path, values)
                try:
                    _check(url, body, header_length, expected)
                    if warmup > 0:
                        _wrk(url, path, header_length, warmup)
                    result = _wrk(url, path, header_length, seconds)
                    _check(url, body, header_length, expected)
                except (loadgen.LoadgenError, RuntimeError, OSError,
                        subprocess.SubprocessError) as exc:
                    served.append(Served(v.label, v.ref, note=_first_line(exc)))
                    continue
                log(f"round {number}: {v.label} ({v.ref}): {result.good_rps:,.0f} 2xx/s, p50 "
                    f"{result.p50_ms} ms, errors {result.errors}")
                served.append(Served(v.label, v.ref, result.good_rps, result.p50_ms,
                                     result.p99_ms, result.errors,
                                     "" if not result.errors else result.detail))
    except processes.ServerError as exc:
        served = [Served(v.label, v.ref, note=_first_line(exc)) for v in chosen]
    return best_runs(served)


def _alternating(items: list[Version], rounds: int) -> list[tuple[int, Version]]:
    """``items`` ``rounds`` times, their order reversed every other round (A B, B A, ...)."""
    return [(number, v) for number in range(1, rounds + 1)
            for v in (items if number % 2 else items[::-1])]


def best_runs(runs: Iterable[Served]) -> list[Served]:
    """One run per version, in first-seen order: a failed run if any (it must show), else
    the one with the most 2xx answers/s."""
    best: dict[str, Served] = {}
    for run in runs:
        kept = best.get(run.label)
        if kept is None or (not kept.note and (run.note or run.rps > kept.rps)):
            best[run.label] = run
    return list(best.values())


def _expected(artifact: Path, values: Any) -> Any:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(artifact), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    row = np.asarray(values, dtype=np.float32).reshape(1, -1)
    return session.run(None, {"x": row})[0].reshape(-1)


def _check(url: str, body: bytes, header_length: int, expected: Any) -> None:
    """The served answer equals ONNX Runtime's on the same artifact (within 1e-3)."""
    import numpy as np

    status, answer = processes.http_post(
        url, body, timeout=30, content_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)})
    if status != 200:
        raise RuntimeError(f"POST {url} answered {status}: {answer[:200]!r}")
    outputs = json.loads(answer)["outputs"]
    got = np.asarray(outputs[0]["data"], dtype=np.float64)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-3):
        raise RuntimeError(f"WRONG ANSWER from {url}: it differs from ONNX Runtime's")


def _wrk(url: str, body: Path, header_length: int, seconds: float) -> loadgen.LoadResult:
    command = processes.pinned(loadgen.wrk_command(url, body, connections=CONNECTIONS,
                                                   seconds=seconds, header_length=header_length),
                               LOAD_CORE)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr[-300:]}")
    return loadgen.parse_wrk(done.stdout, CONNECTIONS)


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


# ------------------------------------------------------------------------------- results


def _mark(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "**not met**")


def _x(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f} x"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _best_int8(result: OptimizeBench) -> Version | None:
    found = [v for label in (DYNAMIC, STATIC) if (v := result.find(MLP, label)) is not None
             and v.ratio() is not None]
    return min(found, key=lambda v: v.ratio() or 0.0) if found else None


def goal_rows(result: OptimizeBench) -> list[tuple[str, str, bool | None]]:
    """(goal, measured, met) of issue 18's benchmark line; met None: not measured."""
    int8, pruned, served = _best_int8(result), result.find(MLP, PRUNED), result.served_ratio()
    pruned_ratio = pruned.ratio() if pruned is not None else None
    runs = {s.label: s for s in result.served}
    int8_ratio = int8.ratio() if int8 is not None else None
    served_text = "—"
    if served is not None:
        served_text = (f"{runs[DYNAMIC].rps:,.0f} vs {runs[PARENT].rps:,.0f} req/s = "
                       f"{served:.2f} x")
    elif result.served:
        served_text = "; ".join(f"{s.label}: {s.note}" for s in result.served if s.note) or "—"
    return [
        (f"{MLP}, batch {BATCH}: dynamic or static INT8 p50 at most {GOAL_INT8:g} x the "
         "parent's", f"{int8.label}: {_x(int8_ratio)}" if int8 is not None else "—",
         None if int8_ratio is None else int8_ratio <= GOAL_INT8),
        (f"{MLP}, batch {BATCH}: 50 % structured pruning p50 at most {GOAL_PRUNED:g} x",
         _x(pruned_ratio), None if pruned_ratio is None else pruned_ratio <= GOAL_PRUNED),
        (f"`ferry serve`, V2 binary, {CONNECTIONS} connections: INT8 at least "
         f"{GOAL_SERVED:g} x the parent's throughput", served_text,
         None if served is None else served >= GOAL_SERVED),
    ]


def _ms(latency: dict[str, dict[str, float]], batch: str) -> str:
    if batch not in latency:
        return "— | —"
    return f"{latency[batch]['p50']:.3f} | {latency[batch]['p99']:.3f}"


def version_table(result: OptimizeBench, model: str) -> list[str]:
    """The table of one model's versions (markdown lines)."""
    lines = [
        "| version | file KiB | parameters | MFLOPs/row | b1 p50 ms | b1 p99 ms | "
        f"b{BATCH} p50 ms | b{BATCH} p99 ms | b{BATCH} p50 vs parent | top-1 agreement | "
        "accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in (v for v in result.versions if v.model == model):
        if v.error:
            lines.append(f"| {v.label} | failed: {v.error} | | | | | | | | | |")
            continue
        ratio = "1 (itself)" if v.label == PARENT else _x(v.ratio())
        lines.append(f"| {v.label} (`{v.ref}`) | {v.file_bytes / 1024:,.0f} | "
                     f"{v.parameters:,} | {v.flops / 1e6:,.2f} | {_ms(v.latency_ms, '1')} | "
                     f"{_ms(v.latency_ms, BATCH)} | {ratio} | {_pct(v.agreement)} | "
                     f"{_pct(v.accuracy)} |")
    return lines


def profile_lines(result: OptimizeBench) -> list[str]:
    """The profiles as one table: ms per run by operator type, and what it says."""
    if not result.profiles:
        return ["No profile was taken."]
    ops: list[str] = []
    for p in result.profiles:
        ops += [op for op, _ in p.ops if op not in ops]
    lines = ["| operator | " + " | ".join(f"{p.label} ms" for p in result.profiles) + " |",
             "|---|" + "---:|" * len(result.profiles)]
    for op in ops:
        cells = [next((f"{ms:.3f}" for o, ms in p.ops if o == op), "") for p in result.profiles]
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    lines.append("| **all kernels** | " + " | ".join(f"**{p.total_ms:.3f}**"
                                                  for p in result.profiles) + " |")
    parent = next((p for p in result.profiles if p.label == PARENT), None)
    for p in result.profiles:
        if p is parent or parent is None or not parent.total_ms or not p.ops:
            continue
        top, top_ms = p.ops[0]
        lines += ["", f"{p.label}: its kernels take {p.total_ms / parent.total_ms:.2f} x the "
                  f"parent's; {p.share(CONVERSION_OPS):.0%} of its kernel time converts "
                  f"between float and integer ({', '.join(sorted(CONVERSION_OPS))}); "
                  f"{top} takes {top_ms / p.total_ms:.0%}."]
    return lines


def served_lines(result: OptimizeBench) -> list[str]:
    """Where a served answer's time goes: the server core's time per answer beside the
    model's in-process time per row at batch 32 (the server batches concurrent requests)."""
    runs = {s.label: s for s in result.served}
    rows = []
    for label in (PARENT, DYNAMIC):
        served, version = runs.get(label), result.find(MLP, label)
        if served is None or not served.rps or version is None or BATCH not in version.latency_ms:
            return []
        rows.append((label, 1e3 / served.rps, version.latency_ms[BATCH]["p50"] / int(BATCH)))
    text = "; ".join(f"{label} {per_answer:.3f} ms per answer, of which the model "
                     f"{per_row:.3f} ms per row in-process (batch {BATCH})"
                     for label, per_answer, per_row in rows)
    rest = [per_answer - per_row for _, per_answer, per_row in rows]
    return [f"Server core time: {text}. The rest, {rest[0]:.3f} and {rest[1]:.3f} ms, is "
            "ferry's transport (HTTP, decoding, batching, encoding), which INT8 does not "
            "shrink: that is why the served ratio is smaller than the in-process one.", ""]


def render(result: OptimizeBench, machine: dict[str, str], *, seconds: float,
           rounds: int, duration: float) -> str:
    """results-optimize.md."""
    goals = goal_rows(result)
    lines = [
        "# Optimized versions beside their parent (issue 18)",
        "",
        "Written by `python -m benchmarks.optimize_bench` (also the `optimize` group of "
        "`python -m benchmarks`). Both models are trained in the run on the bundled digits "
        "(tests/optimize_models.py), imported, and optimized with `ferry.optimize` "
        "(`ferry optimize`); pruning is not followed by retraining.",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        "## Goals",
        "",
        "| goal | measured | verdict |",
        "|---|---|---|",
        *[f"| {goal} | {measured} | {_mark(ok)} |" for goal, measured, ok in goals],
        "",
        f"## In-process latency on one core (core {SERVER_CORE}, one intra-op thread)",
        "",
        f"Each version was timed beside its parent in the same call (`compare_versions`, up "
        f"to 200 runs or {seconds:g} s per batch size), in {rounds} round(s) in alternating "
        f"order; each row is its best round at batch {BATCH}, the parent's row its best over "
        "all those calls, and each ratio divides the two rows' p50 (the parent measured most "
        "often, so a slow spell never flatters a version). Quality on the digits test split "
        "(360 rows).",
    ]
    for model in dict.fromkeys(v.model for v in result.versions):
        lines += ["", f"### {model}", "", *version_table(result, model)]
    lines += [
        "",
        f"## Served: `ferry serve` (core {SERVER_CORE}), wrk (core {LOAD_CORE}), V2 binary, "
        f"{CONNECTIONS} connections",
        "",
        "| version | 2xx answers/s | p50 ms | p99 ms | errors | note |",
        "|---|---:|---:|---:|---:|---|",
        *[f"| {s.label} (`{s.ref}`) | {s.rps:,.0f} | {s.p50_ms or '—'} | {s.p99_ms or '—'} | "
          f"{s.errors} | {s.note} |" for s in result.served],
        "",
        f"One row of 784 values a request, {duration:g} s per run after a warm-up, {rounds} "
        "run(s) per version in alternating order, each row its best run; both versions "
        "served by the same server (`version_policy`), each answer checked against ONNX "
        "Runtime before and after its run.",
        "",
        *served_lines(result),
        f"## Profile: {MLP}, batch {BATCH}, one thread (ONNX Runtime `enable_profiling`)",
        "",
    ]
    missed = [goal for goal, _, ok in goals if ok is False]
    if missed:
        lines += ["Targets not met: " + "; ".join(missed) + ". The kernel times below "
                  "show where the time goes.", ""]
    lines += [*profile_lines(result), *[f"\n{note}" for note in result.notes], ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- driver


def measure_all(workdir: Path, *, seconds: float = 2.0, rounds: int = 3, duration: float = 15.0,
                warmup: float = 3.0, epochs: int = 6) -> OptimizeBench:
    """Train, import, optimize, then measure on one core and serve; every figure of one run."""
    result = OptimizeBench()
    repo, models = prepare(workdir, epochs=epochs)
    result.versions = make_versions(repo, models)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CORE})
    try:
        measure(repo, models, result.versions, seconds=seconds, rounds=rounds)
        result.profiles = profiles(repo, models, result.versions, workdir)
    finally:
        os.sched_setaffinity(0, before)
    x = models[MLP][1].inputs["x"]
    result.served = serve_runs(repo, result.versions, x[0], workdir, seconds=duration,
                               warmup=warmup, rounds=rounds)
    return result


def run(workdir: Path, out: Path, *, seconds: float = 2.0, rounds: int = 3,
        duration: float = 15.0, warmup: float = 3.0, epochs: int = 6,
        machine: Mapping[str, str] | None = None) -> OptimizeBench:
    """Measure and write ``out``; the ``optimize`` group of ``python -m benchmarks``."""
    if machine is None:
        from benchmarks.machine import machine_info

        machine = machine_info()
    keep = ("cpu", "cores", "os", "python", "onnxruntime", "wrk", "date", "load_before")
    shown = {k: v for k, v in machine.items() if k in keep}
    result = measure_all(workdir, seconds=seconds, rounds=rounds, duration=duration,
                         warmup=warmup, epochs=epochs)
    load = os.getloadavg()
    result.notes.append(f"Load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
                        f"{os.cpu_count()} cores shared with other work.")
    out.write_text(render(result, shown, seconds=seconds, rounds=rounds, duration=duration),
                   encoding="utf-8")
    log(f"wrote {out}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m benchmarks.optimize_bench``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.optimize_bench",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="timing budget per version and batch size (200 runs at most)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the in-process timings and of the served runs")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per wrk run")
    parser.add_argument("--epochs", type=int, default=6, help="the MLP's training epochs")
    parser.add_argument("--workdir", type=Path,
                        default=ROOT / "benchmarks" / ".work" / "optimize")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results-optimize.md")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    run(args.workdir.resolve(), args.out.resolve(), seconds=args.seconds, rounds=args.rounds,
        duration=args.duration, warmup=args.warmup, epochs=args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
