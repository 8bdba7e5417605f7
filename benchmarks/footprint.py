"""Footprint of ferry inside a program (issue 19 item 6): the seed model, in-process.

Measures, for the seed network (examples/seed/train.py, imported with ``ferry import`` and
exported with ``ferry export``):

* the core install's size on disk: a fresh virtual environment with only ``pip install
  ferry`` (this checkout, pinned by requirements/constraints.txt), its site-packages less
  pip and setuptools;
* the time of ``import ferry`` there, and the time to first prediction (``import ferry``,
  ``ferry.load(bundle)`` with its hash check, one ``predict``), each the median of fresh
  processes (the interpreter's own start is not counted);
* resident memory (VmRSS after the first prediction; VmHWM after the latency loop);
* p50/p99/p99.9 of single-row ``predict`` over ``--calls`` calls (100,000) on one core
  (``taskset -c 0``; ferry then uses one intra-op thread), beside raw ONNX Runtime on the
  same ``model.onnx`` with one thread (the floor; ``session.run``) and Keras
  ``model.predict`` on the seed's ``my_model.h5`` (the seed's way; ``--keras-calls``, 2,000
  by default, since each call costs milliseconds). ferry and raw ORT run in ``--rounds``
  rounds in alternating order; each figure is the best round's.

Every answer is checked: ferry's, raw ORT's and Keras's for the sample row agree within
1e-4, or the run fails. Run alone (writes benchmarks/results-footprint.md)::

    python -m benchmarks.footprint                       # ~2 minutes with a warm pip cache
    python -m benchmarks.footprint --calls 20000 --keras-calls 300 --out /tmp/f.md

or as the ``footprint`` group of ``python -m benchmarks`` (run once, after the rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed"
CORE = "0"
#: Goals of issue 19 item 6.
GOAL_P50_VS_ORT = 1.5
GOAL_VS_KERAS = 20.0
GOAL_FIRST_PREDICTION_S = 0.5
#: Not counted in the core install's size: what every virtual environment holds.
_VENV_TOOLS = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence")

# The child programs. Each prints one JSON object; times are perf_counter_ns deltas.
_RSS = """
def rss_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0
"""

IMPORT_TIME = """
import json, time
start = time.perf_counter_ns()
import ferry
print(json.dumps({"seconds": (time.perf_counter_ns() - start) / 1e9}))
"""

FIRST_PREDICTION = _RSS + """
import json, sys, time
start = time.perf_counter_ns()
import ferry
model = ferry.load(sys.argv[1])
out = model.predict([json.loads(sys.argv[2])])
seconds = (time.perf_counter_ns() - start) / 1e9
print(json.dumps({"seconds": seconds, "rss_kib": rss_kib("VmRSS"),
                  "answer": next(iter(out.values())).tolist()}))
"""

LATENCY = _RSS + """
import json, sys, time
import numpy as np
kind, target, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
row = np.asarray([json.loads(sys.argv[4])], dtype=np.float32)
if kind == "ferry":
    import ferry
    model = ferry.load(target)
    name = model.signature.inputs[0].name
    predict = model.predict
    arg = {name: row}
    first = lambda out: next(iter(out.values()))
elif kind == "ort":
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(target, sess_options=options,
                                   providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: row}
    predict = lambda feed: session.run(None, feed)
    arg = feed
    first = lambda out: out[0]
else:
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    net = keras.models.load_model(target, compile=False)
    predict = lambda x: net.predict(x, verbose=0)
    arg = row
    first = lambda out: out
answer = first(predict(arg)).tolist()
for _ in range(min(calls, 1000) // 10 or 1):  # warm-up
    predict(arg)
clock = time.perf_counter_ns
samples = [0] * calls
for i in range(calls):
    t0 = clock()
    predict(arg)
    samples[i] = clock() - t0
samples.sort()
pick = lambda q: samples[min(calls - 1, int(q * calls))] / 1e3
print(json.dumps({"calls": calls, "p50_us": pick(0.5), "p99_us": pick(0.99),
                  "p999_us": pick(0.999), "mean_us": sum(samples) / calls / 1e3,
                  "rss_kib": rss_kib("VmHWM"), "answer": answer}))
"""


@dataclass
class Footprint:
    """What one run measured."""

    install_bytes: int = 0
    packages: dict[str, int] = field(default_factory=dict)
    import_s: list[float] = field(default_factory=list)
    first_s: list[float] = field(default_factory=list)
    first_rss_kib: int = 0
    latency: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def best(self, kind: str) -> dict[str, Any]:
        """The round with the lowest p50 of ``kind``."""
        return min(self.latency[kind], key=lambda r: float(r["p50_us"]))


def log(message: str) -> None:
    """Progress on stderr, with the time."""
    print(f"[footprint {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _run(command: Sequence[str], *, timeout: float = 900, cwd: Path | None = None,
         pin: bool = False) -> str:
    if pin and shutil.which("taskset"):
        command = ["taskset", "-c", CORE, *command]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)  # children import the ferry of their own environment
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} exited {done.returncode}:\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def _json(command: Sequence[str], **kwargs: Any) -> dict[str, Any]:
    out = _run(command, **kwargs).strip().splitlines()
    result: dict[str, Any] = json.loads(out[-1])
    return result


def core_venv(path: Path) -> Path:
    """A fresh virtual environment with ferry's core install; returns its python."""
    shutil.rmtree(path, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(path)])
    python = path / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          "-c", str(ROOT / "requirements" / "constraints.txt"), str(ROOT)])
    return python


def install_size(python: Path) -> tuple[int, dict[str, int]]:
    """Bytes of the environment's site-packages less pip/setuptools, and per top-level name."""
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
                      ]).strip())
    sizes: dict[str, int] = {}
    for entry in site.iterdir():
        top = entry.name.split("-")[0].split(".")[0]
        if top in _VENV_TOOLS or entry.name.startswith(("pip-", "setuptools-")):
            continue
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        key = top.lower().replace("_", "-")
        sizes[key] = sizes.get(key, 0) + sum(p.stat().st_size for p in files)
    return sum(sizes.values()), dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def prepare(workdir: Path, seed_h5: Path | None) -> tuple[Path, Path, Path]:
    """The seed's my_model.h5, its imported model.onnx and an exported bundle."""
    workdir.mkdir(parents=True, exist_ok=True)
    h5 = seed_h5 if seed_h5 is not None and seed_h5.is_file() else workdir / "my_model.h5"
    if not h5.is_file():
        log("training the seed network (examples/seed/train.py) -> my_model.h5")
        _run([sys.executable, str(SEED / "train.py")], cwd=workdir)
    repo, bundle = workdir / "repository", workdir / "bundle"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(bundle, ignore_errors=True)
    ferry = [sys.executable, "-c", "import sys; from ferry.cli import main; sys.exit(main())"]
    log("ferry import my_model.h5 --name digits; ferry export digits -o bundle")
    _run([*ferry, "--repo", str(repo), "import", str(h5), "--name", "digits"])
    _run([*ferry, "--repo", str(repo), "export", "digits", "-o", str(bundle)])
    return h5, repo / "digits" / "1" / "model.onnx", bundle


def measure(workdir: Path, *, calls: int = 100_000, keras_calls: int = 2_000, rounds: int = 2,
            repeats: int = 5, seed_h5: Path | None = None) -> Footprint:
    """Run every measurement; raises RuntimeError if an answer disagrees."""
    result = Footprint()
    h5, onnx_path, bundle = prepare(workdir, seed_h5)
    row = json.loads((SEED / "sample.json").read_text())["data"][0]
    log("creating a virtual environment with only the core install")
    python = core_venv(workdir / "core-venv")
    result.install_bytes, result.packages = install_size(python)
    log(f"core install: {result.install_bytes / 2**20:.1f} MiB")
    for _ in range(repeats):
        result.import_s.append(_json([str(python), "-c", IMPORT_TIME], pin=True)["seconds"])
    answers = {}
    for _ in range(repeats):
        first = _json([str(python), "-c", FIRST_PREDICTION, str(bundle), json.dumps(row)],
                      pin=True)
        result.first_s.append(first["seconds"])
        result.first_rss_kib = first["rss_kib"]
        answers["first"] = first["answer"]
    log(f"import ferry {statistics.median(result.import_s) * 1e3:.0f} ms; first prediction "
        f"{statistics.median(result.first_s) * 1e3:.0f} ms")
    kinds = [("ferry", str(python), str(bundle)), ("ort", str(python), str(onnx_path))]
    for number in range(rounds):
        for kind, interpreter, target in kinds if number % 2 == 0 else kinds[::-1]:
            log(f"round {number + 1}: {kind}, {calls:,} single-row calls on core {CORE}")
            got = _json([interpreter, "-c", LATENCY, kind, target, str(calls), json.dumps(row)],
                        pin=True)
            answers[kind] = got.pop("answer")
            result.latency.setdefault(kind, []).append(got)
    log(f"keras: {keras_calls:,} model.predict calls on core {CORE}")
    keras = _json([sys.executable, "-c", LATENCY, "keras", str(h5), str(keras_calls),
                   json.dumps(row)], pin=True, timeout=1800)
    answers["keras"] = keras.pop("answer")
    result.latency["keras"] = [keras]
    _check(answers)
    return result


def _check(answers: dict[str, Any]) -> None:
    reference = answers["ort"]
    for kind, answer in answers.items():
        diff = max(abs(a - b) for a, b in zip(_flat(answer), _flat(reference), strict=True))
        if diff > 1e-4:
            raise RuntimeError(f"{kind}'s answer differs from raw ONNX Runtime's by {diff:g}")


def _flat(value: Any) -> list[float]:
    if isinstance(value, list):
        return [x for item in value for x in _flat(item)]
    return [float(value)]


def render(result: Footprint, machine: dict[str, str], *, calls: int, keras_calls: int) -> str:
    """results-footprint.md."""
    ferry, ort, keras = result.best("ferry"), result.best("ort"), result.best("keras")
    first = statistics.median(result.first_s)
    vs_ort = ferry["p50_us"] / ort["p50_us"]
    vs_keras = keras["p50_us"] / ferry["p50_us"]

    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = [
        "# Footprint: ferry in a program (issue 19 item 6)",
        "",
        "Written by `python -m benchmarks.footprint` (also the `footprint` group of "
        "`python -m benchmarks`). The seed network (64 → 64 → 64 → 10, "
        "examples/seed/train.py), imported with `ferry import` and exported with "
        "`ferry export`; one row of examples/seed/sample.json per call.",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        "## Goals",
        "",
        "| goal | measured | |",
        "|---|---|---|",
        f"| `ferry.load(...).predict` p50 within {GOAL_P50_VS_ORT:g} x raw ONNX Runtime | "
        f"{ferry['p50_us']:.1f} µs vs {ort['p50_us']:.1f} µs = {vs_ort:.2f} x | "
        f"{mark(vs_ort <= GOAL_P50_VS_ORT)} |",
        f"| at least {GOAL_VS_KERAS:g} x faster than Keras `model.predict` (p50) | "
        f"{keras['p50_us']:.0f} µs vs {ferry['p50_us']:.1f} µs = {vs_keras:.0f} x | "
        f"{mark(vs_keras >= GOAL_VS_KERAS)} |",
        f"| time to first prediction under {GOAL_FIRST_PREDICTION_S:g} s | {first:.3f} s | "
        f"{mark(first < GOAL_FIRST_PREDICTION_S)} |",
        "",
        "## Core install (`pip install ferry`)",
        "",
        f"- Size on disk: **{result.install_bytes / 2**20:.1f} MiB** (site-packages of a fresh "
        "virtual environment, pip and setuptools not counted): "
        + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in list(result.packages.items())[:8])
        + ".",
        f"- `import ferry`: median **{statistics.median(result.import_s) * 1e3:.0f} ms** of "
        f"{len(result.import_s)} fresh processes (min {min(result.import_s) * 1e3:.0f} ms); "
        "ONNX Runtime is imported by `ferry.load`, not by `import ferry`.",
        f"- Time to first prediction (`import ferry`, `ferry.load(bundle)` with its sha256 "
        f"check, one `predict`): median **{first * 1e3:.0f} ms** of {len(result.first_s)} "
        f"(min {min(result.first_s) * 1e3:.0f} ms).",
        f"- Resident memory after the first prediction: **{result.first_rss_kib / 1024:.0f} "
        "MiB** (VmRSS).",
        "",
        f"## Single-row latency on one core (`taskset -c {CORE}`)",
        "",
        "| way | calls | p50 µs | p99 µs | p99.9 µs | mean µs | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"ferry": "`ferry.load(bundle).predict(row)` (core install)",
             "ort": "raw ONNX Runtime `session.run` (1 thread; the floor)",
             "keras": "Keras `model.predict(row)` (the seed's way)"}
    for kind in ("ferry", "ort", "keras"):
        for number, r in enumerate(result.latency[kind], 1):
            label = names[kind] + (f", round {number}" if len(result.latency[kind]) > 1 else "")
            lines.append(f"| {label} | {r['calls']:,} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | "
                         f"{r['p999_us']:.1f} | {r['mean_us']:.1f} | "
                         f"{r['rss_kib'] / 1024:.0f} |")
    lines += [
        "",
        f"ferry and raw ORT: {calls:,} calls each per round, rounds in alternating order, the "
        f"goals use each one's best round. Keras: {keras_calls:,} calls (`--keras-calls`, "
        f"default 2,000: each costs milliseconds), so its p99.9 is its "
        f"{_nth(keras_calls - int(0.999 * keras_calls))} slowest call. Every call is timed "
        "alone (`perf_counter_ns`), after a warm-up. The answers of all three for the sample "
        "row agree within 1e-4.",
        *[f"\n{note}" for note in result.notes],
        "",
    ]
    return "\n".join(lines)


def _nth(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def run(workdir: Path, out: Path, *, calls: int = 100_000, keras_calls: int = 2_000,
        rounds: int = 2, seed_h5: Path | None = None,
        machine: dict[str, str] | None = None) -> Footprint:
    """Measure and write ``out``; the ``footprint`` group of ``python -m benchmarks``."""
    if machine is None:
        from benchmarks.machine import machine_info

        machine = machine_info()
    keep = ("cpu", "cores", "os", "python", "onnxruntime", "date", "load_before")
    machine = {k: v for k, v in machine.items() if k in keep}
    result = measure(workdir, calls=calls, keras_calls=keras_calls, rounds=rounds,
                     seed_h5=seed_h5)
    load = os.getloadavg()
    result.notes.append(f"Load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
                        f"{os.cpu_count()} cores shared with other work.")
    out.write_text(render(result, machine, calls=calls, keras_calls=keras_calls),
                   encoding="utf-8")
    log(f"wrote {out}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m benchmarks.footprint``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.footprint",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--keras-calls", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed-h5", type=Path, default=ROOT / "benchmarks" / ".work" / "seed"
                        / "my_model.h5", help="reuse this my_model.h5 (trained when missing)")
    parser.add_argument("--workdir", type=Path,
                        default=ROOT / "benchmarks" / ".work" / "footprint")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results-footprint.md")
    args = parser.parse_args(argv)
    run(args.workdir.resolve(), args.out.resolve(), calls=args.calls,
        keras_calls=args.keras_calls, rounds=args.rounds, seed_h5=args.seed_h5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
