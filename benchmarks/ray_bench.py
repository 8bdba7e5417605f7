"""Ferry on Ray Serve (issue 20 item 3): W1 through Ray's HTTP proxy, three deployments.

Each deployment runs alone on a fresh local Ray instance (``ray.init(address="local")``,
no dashboard) started by a child process pinned to the server core (``taskset -c
0``: Ray's controller, HTTP proxy and the replica inherit it), with one replica, Serve's
proxy on 127.0.0.1; wrk drives W1's V2 JSON request at 64 connections from the load core:

* **ferry on Ray**: ``ferry.ray.deploy`` (ferry's engine and REST app in the replica; its
  defaults, ``max_ongoing_requests`` 256, ferry's per-model batching);
* **plain Ray Serve + ORT**: the same ONNX file (``model.onnx`` of the imported version)
  written the way Ray's documentation writes a model deployment: a ``@serve.deployment``
  class with ``@serve.ingress(FastAPI())``, an ``onnxruntime.InferenceSession`` made in
  ``__init__``, and an ``async def`` route that parses the V2 JSON body, runs the session and
  returns a dict (Ray's defaults otherwise: ``max_ongoing_requests`` 5), in
  benchmarks/ray_apps.py;
* **plain, max_ongoing_requests 256**: the same, with ferry's in-flight bound, so that the
  comparison does not rest on Ray's default alone;
* **no-op Ray Serve**: the same FastAPI ingress reading the body and answering a constant
  V2 body, with ``max_ongoing_requests`` 256: Ray's own ceiling on this machine for this
  request (its proxy, router and replica, no model). Beside it the same no-op that never
  reads the body: in Ray Serve the body travels from the proxy to the replica only when the
  app asks for it, an extra round trip that every real server pays.

Goal: ferry >= 3x plain, or, where Ray's proxy caps both, ferry >= 80 % of the no-op.
Every answer of ferry and of plain is checked against raw ONNX Runtime before its run.

Run alone (trains and imports the seed once under ``--workdir``; writes
benchmarks/results-ray.md)::

    python -m benchmarks.ray_bench                       # ~2 minutes
    python -m benchmarks.ray_bench --duration 5 --warmup 2 --out /tmp/ray.md

or as the ``ray`` group of ``python -m benchmarks`` (run once, after the rounds).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import loadgen
from benchmarks.loadgen import LoadResult
from benchmarks.processes import LOAD_CORE, SERVER_CORE, free_port, http_post, pinned
from benchmarks.workloads import (
    Workload,
    WrongAnswerError,
    check_v2,
    make_workload,
    seed_values,
)

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed"
CONNECTIONS = 64
GOAL_VS_PLAIN = 3.0
GOAL_VS_NOOP = 0.8

#: ferry.ray.deploy's default, given to the no-op (Ray's best case) and to plain-256.
SCALED = {"max_ongoing_requests": 256}
KINDS = {
    "ferry": "ferry on Ray (ferry.ray.deploy, max_ongoing_requests 256)",
    "plain": "plain Ray Serve + ORT (as Ray's docs: FastAPI ingress, Ray's defaults)",
    "plain-256": "plain Ray Serve + ORT, max_ongoing_requests 256",
    "noop": "no-op Ray Serve (reads the body, constant answer, max_ongoing_requests 256)",
    "noop-unread": "no-op Ray Serve, body never read (max_ongoing_requests 256)",
}


@dataclass(frozen=True)
class Run:
    """One deployment's measured run, or why there is none."""

    server: str
    result: LoadResult | None
    why: str = ""


# ----------------------------------------------------------------- the child: one cluster


def _cluster(kind: str, repository: str, model: str, artifact: str, port: int) -> None:
    """Start local Ray, deploy ``kind``, print READY, serve until stdin closes."""
    import ray
    from ray import serve

    ray.init(address="local", include_dashboard=False, num_cpus=2, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        if kind == "ferry":
            import ferry.ray

            ferry.ray.deploy(repository, models=[model], host="127.0.0.1", port=port,
                             num_replicas=1)
        else:
            from benchmarks import ray_apps

            if model != ray_apps.MODEL:
                raise SystemExit(f"the comparison deployments serve {ray_apps.MODEL!r} only")
            if kind.startswith("plain"):
                app = ray_apps.OnnxModel
                bound = app.options(**SCALED).bind(artifact) if kind == "plain-256" \
                    else app.bind(artifact)
            else:
                noop = ray_apps.Noop if kind == "noop" else ray_apps.NoopUnread
                bound = noop.options(**SCALED).bind()
            serve.run(bound, name="bench", route_prefix="/")
        print("READY", flush=True)
        sys.stdin.read()
    finally:
        serve.shutdown()
        ray.shutdown()


# ----------------------------------------------------------------- the parent: measure


def measure(kind: str, repository: Path, w: Workload, bodies: Path, *, duration: float,
            warmup: float, logs: Path) -> Run:
    """Start ``kind``'s cluster, check its answer, warm up, run wrk; always stop it."""
    server = KINDS[kind]
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"ray-{kind}.log"
    command = pinned([sys.executable, "-m", "benchmarks.ray_bench", "--cluster", kind,
                      "--repository", str(repository), "--model", w.model,
                      "--artifact", str(w.artifact), "--port", str(port)], SERVER_CORE)
    with log_path.open("w") as sink:
        child = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=sink, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        line = child.stdout.readline()
        if line.strip() != "READY":
            return Run(server, None, f"did not start (see {log_path}): {line.strip()[:200]}")
        url = f"http://127.0.0.1:{port}/v2/models/{w.model}/infer"
        body = w.v2_body()
        status, answer = http_post(url, body, timeout=30)
        if status != 200:
            return Run(server, None, f"answered {status}: {answer[:200]!r}")
        if not kind.startswith("noop"):
            check_v2(answer, w)  # WrongAnswerError: the run is not reported as a figure
        path = bodies / "ray-w1-v2.json"
        bodies.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        _wrk(url, path, warmup)
        return Run(server, _wrk(url, path, duration))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)


def _wrk(url: str, body: Path, seconds: float) -> LoadResult:
    command = pinned(loadgen.wrk_command(url, body, connections=CONNECTIONS, seconds=seconds),
                     LOAD_CORE)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    return loadgen.parse_wrk(done.stdout + done.stderr, CONNECTIONS)


def verdict(runs: dict[str, Run]) -> str:
    """The goal's line: ferry vs plain (3x), or vs the no-op ceiling (80 %)."""
    ferry, plain, noop = (runs[k].result if k in runs else None
                          for k in ("ferry", "plain", "noop"))
    if ferry is None or plain is None or noop is None or not plain.good_rps \
            or not noop.good_rps:
        return "not measured (a run is missing; see the table)"
    vs_plain = ferry.good_rps / plain.good_rps
    vs_noop = ferry.good_rps / noop.good_rps
    met = vs_plain >= GOAL_VS_PLAIN or vs_noop >= GOAL_VS_NOOP
    scaled = runs.get("plain-256")
    also = (f" ({ferry.good_rps / scaled.result.good_rps:.2f}x plain with "
            "max_ongoing_requests 256)"
            if scaled is not None and scaled.result is not None and scaled.result.good_rps
            else "")
    return (f"ferry on Ray = {vs_plain:.2f}x plain as Ray's docs write it (goal "
            f"{GOAL_VS_PLAIN:g}x){also} and {vs_noop:.0%} of the no-op ceiling (goal "
            f"{GOAL_VS_NOOP:.0%} where the proxy caps both): {'met' if met else 'NOT met'}")


def render(runs: dict[str, Run], *, duration: float, machine: dict[str, str]) -> str:
    """results-ray.md."""
    lines = ["# Ferry on Ray Serve: W1 through Ray's HTTP proxy", "",
             "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine.items()), "",
             f"Method: each deployment alone on a fresh local Ray instance pinned to core "
             f"{SERVER_CORE} (one replica; Ray's controller and proxy share the core), wrk on "
             f"core {LOAD_CORE}, {CONNECTIONS} connections, W1's V2 JSON request (batch 1), "
             f"{duration:g} s after a warm-up; ferry's and plain's answers checked against "
             "raw ONNX Runtime first.", "",
             "| server | req/s (2xx) | p50 ms | p99 ms | errors |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for run in runs.values():
        r = run.result
        if r is None:
            lines.append(f"| {run.server} | not measured: {run.why} | | | |")
        else:
            lines.append(f"| {run.server} | {r.good_rps:,.0f} | {r.p50_ms or 0:.1f} | "
                         f"{r.p99_ms or 0:.1f} | {r.errors} |")
    lines += ["", f"Goal: {verdict(runs)}.", ""]
    return "\n".join(lines)


def run(workdir: Path, out: Path, repository: Path, w: Workload, *, duration: float,
        warmup: float, machine: dict[str, str]) -> dict[str, Run]:
    """Measure the three deployments in turn and write ``out``."""
    runs: dict[str, Run] = {}
    for kind in KINDS:
        try:
            runs[kind] = measure(kind, repository, w, workdir / "bodies",
                                 duration=duration, warmup=warmup, logs=workdir / "logs")
        except WrongAnswerError as exc:
            runs[kind] = Run(KINDS[kind], None, f"WRONG ANSWER: {str(exc)[:200]}")
        except (loadgen.LoadgenError, OSError, subprocess.SubprocessError) as exc:
            runs[kind] = Run(KINDS[kind], None, str(exc).splitlines()[0][:200])
        print(f"[ray bench] {KINDS[kind]}: "
              f"{runs[kind].result.good_rps if runs[kind].result else runs[kind].why}",
              file=sys.stderr, flush=True)
    out.write_text(render(runs, duration=duration, machine=machine), encoding="utf-8")
    return runs


def _prepare(workdir: Path) -> tuple[Path, Workload]:
    """Train the seed and ``ferry import`` it as ``digits`` (once per workdir)."""
    from ferry.repository import Repository

    repository = workdir / "repository"
    repo = Repository(repository)
    if "digits" not in (repo.models() if repository.is_dir() else []):
        seed = workdir / "seed"
        seed.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(SEED / "train.py")], cwd=seed, check=True,
                       capture_output=True)
        subprocess.run([sys.executable, "-m", "ferry", "--repo", str(repository), "import",
                        str(seed / "my_model.h5"), "--name", "digits", "--labels",
                        ",".join(map(str, range(10)))], check=True, capture_output=True)
    return repository, make_workload("W1", "seed network 64-64-64-10", "digits",
                                     repo.open("digits").artifact_path,
                                     seed_values(SEED / "sample.json"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ray_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work" / "ray")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results-ray.md")
    parser.add_argument("--cluster", choices=sorted(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--repository", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--artifact", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cluster:
        _cluster(args.cluster, args.repository, args.model, args.artifact, args.port)
        return 0
    from benchmarks.machine import machine_info

    repository, w = _prepare(args.workdir)
    started = time.monotonic()
    runs = run(args.workdir, args.out, repository, w, duration=args.duration,
               warmup=args.warmup, machine=machine_info())
    print(f"wrote {args.out} in {time.monotonic() - started:.0f} s: {verdict(runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
