"""``make bench``: every figure of issue 4's Performance section, measured in one run.

Order: build the workloads (train the seed and ``ferry import`` it; build W2 and import it),
raw ONNX Runtime (the limit), then for each workload the plain FastAPI endpoint, ferry
(``/predict``, V2 JSON with and without Content-Type, V2 binary, gRPC; then W1's V2 JSON with
an API key, with a JWT and over TLS, each on its own ``ferry serve``), the Flask seed and the
no-op ceilings (a no-op ASGI app for REST, a no-op grpc.aio servicer for gRPC), ferry's
cold start, then issue 16's overload runs (W1 past the saturating connection count, with
default settings and in refusal mode; ``benchmarks.overload``), then issue 19's footprint of
ferry inside a program (``benchmarks.footprint``, its own results-footprint.md), then issue
18's optimized versions beside their parent (``benchmarks.optimize_bench``, its own
results-optimize.md).
Each server runs pinned to core 0, each load generator to core 1. A server that cannot be
started is reported as such in the table; the rest still runs. results.md is written at the
end (and after each group, so an interrupted run still leaves its figures).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import footprint, loadgen, metrics, optimize_bench, overload, prober, security
from benchmarks.loadgen import LoadgenError, LoadResult
from benchmarks.machine import machine_info
from benchmarks.processes import (
    LOAD_CORE,
    SERVER_CORE,
    ServerError,
    Service,
    free_port,
    http_get,
    http_post,
    pinned,
    post_ok,
    running,
)
from benchmarks.results import (
    FASTAPI,
    FASTAPI_TYPICAL,
    FERRY,
    FLASK,
    GRPC,
    NOOP,
    NOOP_GRPC,
    NOOP_ROUTE,
    OVERLOAD_PROBE,
    OVERLOAD_REFUSE,
    OVERLOAD_WAIT,
    PREDICT,
    V2_BINARY,
    V2_JSON,
    V2_JSON_API_KEY,
    V2_JSON_CONTROL,
    V2_JSON_JWT,
    V2_JSON_NO_TYPE,
    V2_JSON_TLS,
    Measurement,
    Report,
    render,
)
from benchmarks.security import Variant
from benchmarks.workloads import (
    Workload,
    WrongAnswerError,
    build_mlp,
    check_grpc,
    check_predict,
    check_v2,
    grpc_method,
    make_workload,
    seed_values,
    w2_values,
)

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed"
GROUPS = ("raw", "fastapi", "ferry", "flask", "noop", "cold", "overload", "footprint",
          "ray", "optimize")
WRK = "wrk (HTTP/1.1)"
H2LOAD = "h2load (HTTP/2, compiled; gRPC framing)"

Check = Callable[[bytes, Workload], None]
#: Requests by gRPC status on the server (None: the server cannot say).
Counts = Callable[[], dict[str, float] | None]
JSON = "application/json"
#: The connection count of issue 15's secured runs (API key, JWT, TLS).
SECURED_CONNECTIONS = 64


@dataclass(frozen=True)
class Options:
    """Command-line settings of one benchmark run."""

    duration: float
    warmup: float
    workdir: Path
    out: Path
    groups: frozenset[str]
    connections: tuple[int, ...]
    cold_runs: int
    rounds: int = 2


def log(message: str) -> None:
    """Progress on stderr, with the time, so a 15-minute run shows where it is."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def python() -> str:
    """The interpreter running the benchmark (the project's virtualenv under ``make bench``)."""
    return sys.executable


def ferry_command(*args: str) -> list[str]:
    """``ferry ARGS``: the console script beside this interpreter, else the same entry point."""
    script = Path(sys.executable).parent / "ferry"
    if script.exists():
        return [str(script), *args]
    return [python(), "-c", "import sys; from ferry.cli import main; sys.exit(main())", *args]


def _run(command: Sequence[str], *, cwd: Path | None = None, timeout: float = 600,
         env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} exited {done.returncode}:\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


class Bench:
    """One benchmark run: the workloads, the report, and a method per group of measurements."""

    def __init__(self, options: Options) -> None:
        self.o = options
        self.repo = options.workdir / "repository"
        self.bodies = options.workdir / "bodies"
        self.logs = options.workdir / "logs"
        self.wrong_answers = 0
        self.round = 1
        self.variants: list[Variant] | None = None
        self.report = Report(machine=machine_info(), settings={
            "Method": (f"server pinned to core {SERVER_CORE} (`taskset -c {SERVER_CORE}`), load "
                       f"generator to core {LOAD_CORE}; batch-1 requests, closed loop; each "
                       f"run {self.o.duration:g} s after a {self.o.warmup:g} s warm-up; every "
                       "server's answer checked against raw ONNX Runtime before each run; raw "
                       f"ORT, FastAPI and ferry measured in {self.o.rounds} round(s), their "
                       "order reversed every other round, each figure the best of its rounds "
                       "(the machine is shared: a slow spell then hits both sides)"),
            "Errors": ("non-2xx answers and socket errors/timeouts (wrk, via benchmarks/wrk/"
                       "post.lua); for gRPC, HTTP errors seen by h2load plus non-OK gRPC "
                       "statuses counted by the server's /metrics"),
        })

    # ------------------------------------------------------------------ workloads

    def prepare(self) -> dict[str, Workload]:
        """Train and import W1, build and import W2; compute each expected answer."""
        shutil.rmtree(self.repo, ignore_errors=True)
        seed_dir = self.o.workdir / "seed"
        seed_dir.mkdir(parents=True, exist_ok=True)
        log("W1: training the seed network (examples/seed/train.py) -> my_model.h5")
        _run([python(), str(SEED / "train.py")], cwd=seed_dir)
        log("W1: ferry import my_model.h5 --name digits")
        _run(ferry_command("--repo", str(self.repo), "import", str(seed_dir / "my_model.h5"),
                           "--name", "digits", "--labels", ",".join(map(str, range(10)))))
        log("W2: building the 784-2048-2048-10 MLP as ONNX and importing it (--name mlp)")
        w2_path = build_mlp(self.o.workdir / "w2" / "mlp.onnx")
        _run(ferry_command("--repo", str(self.repo), "import", str(w2_path), "--name", "mlp"))
        from ferry.repository import Repository

        repo = Repository(self.repo)
        return {
            "W1": make_workload("W1", "seed network 64-64-64-10", "digits",
                                repo.open("digits").artifact_path,
                                seed_values(SEED / "sample.json")),
            "W2": make_workload("W2", "MLP 784-2048-2048-10 FP32", "mlp",
                                repo.open("mlp").artifact_path, w2_values()),
        }

    # ------------------------------------------------------------------ raw ORT

    def raw_ort(self, workloads: dict[str, Workload]) -> None:
        """The limit: in-process ONNX Runtime on the server core, batch 1/8/32/64/128."""
        for key, w in workloads.items():
            log(f"{key}: raw ONNX Runtime on core {SERVER_CORE}")
            out = _run(pinned([python(), "-m", "benchmarks.raw_ort", str(w.artifact)],
                              SERVER_CORE), cwd=ROOT, timeout=300)
            measured = json.loads(out.strip().splitlines()[-1])
            # Over the rounds, the best figure of each batch size: the limit, not a bad spell.
            kept = self.report.raw_ort.setdefault(key, {})
            for batch, figures in measured.items():
                if batch not in kept or figures["samples_per_s"] > kept[batch]["samples_per_s"]:
                    kept[batch] = figures

    # ------------------------------------------------------------------ load runs

    def _body(self, name: str, content: bytes) -> Path:
        self.bodies.mkdir(parents=True, exist_ok=True)
        path = self.bodies / name
        path.write_bytes(content)
        return path

    def _verify(self, url: str, body: bytes, check: Check, w: Workload,
                header_length: int | None = None, content_type: str | None = JSON,
                variant: Variant | None = None) -> None:
        headers: dict[str, str] = dict(variant.headers) if variant is not None else {}
        if header_length is not None:
            content_type = "application/octet-stream"
            headers["Inference-Header-Content-Length"] = str(header_length)
        status, answer = http_post(url, body, timeout=30, content_type=content_type,
                                   headers=headers,
                                   context=variant.context() if variant is not None else None)
        if status != 200:
            raise WrongAnswerError(f"POST {url} answered {status}: {answer[:300]!r}")
        check(answer, w)

    def _wrk(self, url: str, body: Path, connections: int, seconds: float,
             header_length: int | None = None, content_type: str | None = JSON,
             headers_file: Path | None = None) -> LoadResult:
        if header_length is not None:
            content_type = "application/octet-stream"
        command = pinned(loadgen.wrk_command(url, body, connections=connections,
                                             seconds=seconds, content_type=content_type,
                                             header_length=header_length,
                                             headers_file=headers_file), LOAD_CORE)
        out = _run(command, timeout=seconds + 60)
        return loadgen.parse_wrk(out, connections)

    def http_runs(self, service: Service, w: Workload, server: str, route: str, url: str,
                  body: bytes, check: Check, header_length: int | None = None, *,
                  content_type: str | None = JSON, variant: Variant | None = None,
                  connections: Sequence[int] | None = None, seconds: float | None = None,
                  warmup: float | None = None, probe: bool = False) -> None:
        """Check one answer, then warm up and measure at each connection count.

        ``content_type`` None sends no Content-Type header, in the checks and in the load.
        ``variant``: the headers (credential) and TLS trust of a secured run, checks and load.
        ``seconds`` and ``warmup`` replace ``--duration`` and ``--warmup`` (0: no warm-up).
        ``probe``: time each answer by status with ``benchmarks.prober`` during the run
        (plain HTTP, JSON bodies).
        """
        path = self._body(_slug(f"{w.key}-{server}-{route}") + ".json", body)
        headers_file = variant.headers_file if variant is not None else None
        seconds = self.o.duration if seconds is None else seconds
        warmup = self.o.warmup if warmup is None else warmup
        for conns in self.o.connections if connections is None else connections:
            m = Measurement(w.key, server, route, conns, WRK, round=self.round)
            try:
                self._verify(url, body, check, w, header_length, content_type, variant)
                if warmup > 0:
                    self._wrk(url, path, conns, warmup, header_length, content_type,
                              headers_file)
                cpu_before = service.cpu_seconds()
                process = self._probe_start(url, path, seconds) if probe else None
                try:
                    result = self._wrk(url, path, conns, seconds, header_length,
                                       content_type, headers_file)
                    probed, probe_note = _probe_finish(process, seconds)
                finally:
                    if process is not None and process.poll() is None:
                        process.kill()
                        process.wait()
                cpu = (service.cpu_seconds() - cpu_before) / result.seconds
                # still right after the load
                self._verify(url, body, check, w, header_length, content_type, variant)
            except WrongAnswerError as exc:
                self.wrong_answers += 1
                m = Measurement(w.key, server, route, conns, WRK, note=f"WRONG ANSWER: {exc}",
                                round=self.round)
            except Exception as exc:  # a failed run is reported, the benchmark goes on
                m = Measurement(w.key, server, route, conns, WRK, note=_first_line(exc),
                                round=self.round)
            else:
                m = Measurement(w.key, server, route, conns, WRK, result, server_cpu=cpu,
                                round=self.round, probe=probed, note=probe_note)
                log(f"{w.key} {server} {route} c={conns}: {result.rps:,.0f} req/s "
                    f"({result.good_rps:,.0f} 2xx/s), p50 {result.p50_ms} ms, "
                    f"p99 {result.p99_ms} ms, errors {result.errors}, server CPU {cpu:.0%}")
            self.report.measurements.append(m)

    def _probe_start(self, url: str, body: Path, seconds: float) -> subprocess.Popen[str]:
        """``benchmarks.prober`` on the load core, timing answers inside the wrk run started
        right after it: from 0.5 s in (wrk's connections open) to 0.5 s before its end."""
        command = pinned(prober.probe_command(python(), url, body, max(0.5, seconds - 1.0),
                                              delay=0.5), LOAD_CORE)
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, cwd=ROOT)

    def grpc_runs(self, service: Service, w: Workload, target: str, counts: Counts, *,
                  server: str = FERRY) -> None:
        """Check one gRPC answer, then measure with h2load at each connection count.

        ``counts`` reads the server's answers by gRPC status (ferry: its ``/metrics``) before
        and after each run: statuses other than OK are errors, and so are answers h2load saw
        that the server did not count (a call refused by grpc before the servicer ran).
        """
        import grpc

        message = w.grpc_message()
        path = self._body(f"{w.key}-grpc.bin", w.grpc_body())
        url = f"http://{target}{grpc_method()}"
        for conns in self.o.connections:
            try:
                with grpc.insecure_channel(target) as channel:
                    call = channel.unary_unary(grpc_method())
                    check_grpc(call(message, timeout=30), w)
                before = counts()
                cpu_before = service.cpu_seconds()
                log_file = self.o.workdir / "logs" / f"h2load-{_slug(server)}-{w.key}-{conns}.tsv"
                log_file.parent.mkdir(parents=True, exist_ok=True)
                command = pinned(loadgen.h2load_command(
                    url, path, connections=conns, seconds=self.o.duration,
                    warmup=self.o.warmup, log_file=log_file), LOAD_CORE)
                out = _run(command, timeout=self.o.duration + self.o.warmup + 60)
                # h2load warms up inside the same command: the share covers both phases.
                cpu = (service.cpu_seconds() - cpu_before) / (self.o.duration + self.o.warmup)
                with log_file.open(encoding="utf-8") as lines:
                    result = loadgen.parse_h2load(out, lines, conns)
                after = counts()
                with grpc.insecure_channel(target) as channel:
                    check_grpc(channel.unary_unary(grpc_method())(message, timeout=30), w)
                if before is not None and after is not None:
                    bad, ok = metrics.non_ok(before, after)
                    # The server's counts cover the warm-up too: never fewer than h2load's.
                    unseen = max(0, result.requests - ok - bad)
                    note = f"server: gRPC OK {ok}, not OK {bad}"
                    if unseen:
                        note += f", {unseen} answers h2load saw were not counted by the server"
                    result = result.with_errors(bad + unseen, note)
                else:
                    result = result.with_errors(0, "gRPC statuses NOT counted (no /metrics "
                                                   "counter by protocol and status)")
                m = Measurement(w.key, server, GRPC, conns, H2LOAD, result, server_cpu=cpu,
                                round=self.round)
                log(f"{w.key} {server} gRPC c={conns}: {result.rps:,.0f} req/s, "
                    f"p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, errors {result.errors}, "
                    f"server CPU {cpu:.0%}")
            except WrongAnswerError as exc:
                self.wrong_answers += 1
                m = Measurement(w.key, server, GRPC, conns, H2LOAD,
                                note=f"WRONG ANSWER: {exc}", round=self.round)
            except Exception as exc:  # reported in the table; the benchmark goes on
                m = Measurement(w.key, server, GRPC, conns, H2LOAD, note=_first_line(exc),
                                round=self.round)
            self.report.measurements.append(m)

    def _skip(self, w: Workload, server: str, routes: Sequence[str], client: str,
              why: str, connections: Sequence[int] | None = None) -> None:
        for route in routes:
            for conns in self.o.connections if connections is None else connections:
                self.report.measurements.append(
                    Measurement(w.key, server, route, conns, client, note=why, round=self.round))

    # ------------------------------------------------------------------ servers

    def uvicorn(self, name: str, app: str, port: int, env: dict[str, str], *,
                access_log: bool = False) -> Service:
        """A uvicorn server of one of the baseline apps, one worker."""
        command = [python(), "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
        if not access_log:
            command += ["--no-access-log", "--log-level", "warning"]
        return Service(name, command, log=self.logs / f"{name}.log", cwd=ROOT,
                       env={**os.environ, **env})

    def fastapi(self, w: Workload) -> None:
        """The plain FastAPI + ONNX Runtime endpoint: the faster form, then the typical one."""
        for server, path, access_log in ((FASTAPI, "/predict", False),
                                         (FASTAPI_TYPICAL, "/predict-sync", True)):
            port = free_port()
            url = f"http://127.0.0.1:{port}{path}"
            service = self.uvicorn(f"fastapi-{w.key}-{path.strip('/')}",
                                   "benchmarks.baselines.fastapi_app:app", port,
                                   {"MODEL_PATH": str(w.artifact)}, access_log=access_log)
            log(f"{w.key}: {server} on :{port}")
            try:
                with running(service, post_ok(url, w.predict_body()), timeout=60):
                    self.http_runs(service, w, server, PREDICT, url, w.predict_body(),
                                   check_predict)
            except ServerError as exc:
                self._skip(w, server, [PREDICT], WRK, _first_line(exc))

    def fastapi_all(self, workloads: dict[str, Workload]) -> None:
        """The FastAPI baselines of every workload."""
        for w in workloads.values():
            self.fastapi(w)

    def flask(self, w: Workload) -> None:
        """The seed's own service: examples/seed/app.py on the my_model.h5 it was trained to."""
        port = free_port()
        url = f"http://127.0.0.1:{port}/predict"
        service = Service(f"flask-{w.key}", [python(), str(SEED / "app.py")],
                          log=self.logs / "flask.log", cwd=self.o.workdir / "seed",
                          env={**os.environ, "PORT": str(port)})
        log(f"{w.key}: Flask + Keras seed service on :{port}")
        try:
            with running(service, post_ok(url, w.predict_body(), timeout=30), timeout=180):
                self.http_runs(service, w, FLASK, PREDICT, url, w.predict_body(), check_predict)
        except ServerError as exc:
            self._skip(w, FLASK, [PREDICT], WRK, _first_line(exc))

    def noop_all(self, workloads: dict[str, Workload]) -> None:
        """Both transport ceilings: the no-op ASGI app (W1's body) and the no-op gRPC servicer
        (each workload's request and answer)."""
        self.noop(workloads["W1"])
        for w in workloads.values():
            self.noop_grpc(w)

    def noop(self, w: Workload) -> None:
        """The transport ceiling of ferry's REST stack (same body as W1's /predict)."""
        port = free_port()
        url = f"http://127.0.0.1:{port}/noop"
        service = self.uvicorn("noop", "benchmarks.baselines.noop_app:app", port, {})
        log(f"no-op endpoint on :{port}")

        def check(body: bytes, _: Workload) -> None:
            if not body.startswith(b'{"predictions"'):
                raise WrongAnswerError(f"no-op answered {body[:100]!r}")

        try:
            with running(service, post_ok(url, b"{}"), timeout=60):
                self.http_runs(service, w, NOOP, NOOP_ROUTE, url, w.predict_body(), check)
        except ServerError as exc:
            self._skip(w, NOOP, [NOOP_ROUTE], WRK, _first_line(exc))

    def noop_grpc(self, w: Workload) -> None:
        """The transport ceiling of ferry's gRPC door: a no-op grpc.aio ModelInfer servicer.

        It answers every call with the answer ferry gives for ``w`` (checked like ferry's);
        h2load sends it the same request file, at the same connection counts.
        """
        from benchmarks.baselines import noop_grpc  # grpc and ferry's generated code

        port = free_port()
        target = f"127.0.0.1:{port}"
        answer = self._body(f"{w.key}-grpc-answer.bin", w.grpc_answer())
        service = Service(f"noop-grpc-{w.key}", noop_grpc.command(python(), port, answer),
                          log=self.logs / f"noop-grpc-{w.key}.log", cwd=ROOT,
                          env={**os.environ})
        log(f"{w.key}: no-op grpc.aio servicer on :{port}")
        try:
            with running(service, lambda: noop_grpc_counts(target) is not None, timeout=60):
                self.grpc_runs(service, w, target, lambda: noop_grpc_counts(target),
                               server=NOOP_GRPC)
        except ServerError as exc:
            self._skip(w, NOOP_GRPC, [GRPC], H2LOAD, _first_line(exc))

    def ferry_available(self) -> str | None:
        """None when ``ferry serve`` exists here, else why not (the rows say so)."""
        done = subprocess.run(ferry_command("serve", "--help"), capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            return ("`ferry serve` is not available in this checkout: "
                    + _first_line(done.stdout + done.stderr))
        return None

    def ferry_service(self, name: str, http_port: int, grpc_port: int,
                      models: Sequence[str], env: dict[str, str] | None = None) -> Service:
        """``ferry serve`` of the benchmark repository, one worker, pinned to the server core.

        ``env``: more variables (``FERRY_SECURITY__*`` settings of a secured run).
        """
        command = ferry_command("serve", str(self.repo), "--models", ",".join(models),
                                "--host", "127.0.0.1", "--http-port", str(http_port),
                                "--grpc-port", str(grpc_port), "--workers", "1")
        return Service(name, command, log=self.logs / f"{name}.log",
                       env={**os.environ, **env} if env else None)

    def ferry(self, workloads: dict[str, Workload]) -> None:
        """ferry's plain server, then (every other round: first) W1's secured runs.

        Both halves run in every round, their order reversed every other round as the
        compared groups are: the secured ratios divide by the plain V2 JSON figure.
        """
        why = self.ferry_available()
        w1 = workloads["W1"]
        if why is not None:
            for w in workloads.values():
                self._skip(w, FERRY, _ferry_rest_routes(w), WRK, why)
                self._skip(w, FERRY, [GRPC], H2LOAD, why)
            self._skip(w1, FERRY, SECURED_ROUTES, WRK, why, self._secured_connections())
            log(why)
            return
        if self.round % 2:
            self.ferry_plain(workloads)
            self.ferry_secured(w1)
        else:
            self.ferry_secured(w1)
            self.ferry_plain(workloads)

    def ferry_plain(self, workloads: dict[str, Workload]) -> None:
        """ferry serving both models: /predict, V2 JSON and gRPC at 64 and 1 connections."""
        http_port, grpc_port = free_port(), free_port()
        base = f"http://127.0.0.1:{http_port}"
        service = self.ferry_service("ferry", http_port, grpc_port,
                                     [w.model for w in workloads.values()])
        log(f"ferry serve on :{http_port} (REST) and :{grpc_port} (gRPC)")

        def ready() -> bool:
            return http_get(f"{base}/v2/health/ready", timeout=2)[0] == 200

        try:
            with running(service, ready, timeout=120):
                for w in workloads.values():
                    self.http_runs(service, w, FERRY, PREDICT, f"{base}/predict/{w.model}",
                                   w.predict_body(), check_predict)
                    self.http_runs(service, w, FERRY, V2_JSON,
                                   f"{base}/v2/models/{w.model}/infer", w.v2_body(), check_v2)
                    if V2_JSON_NO_TYPE in _ferry_rest_routes(w):
                        # tritonclient.http's form of the same request: no Content-Type.
                        self.http_runs(service, w, FERRY, V2_JSON_NO_TYPE,
                                       f"{base}/v2/models/{w.model}/infer", w.v2_body(),
                                       check_v2, content_type=None)
                    body, header_length = w.v2_binary_body()
                    self.http_runs(service, w, FERRY, V2_BINARY,
                                   f"{base}/v2/models/{w.model}/infer", body, check_v2,
                                   header_length)
                    self.grpc_runs(service, w, f"127.0.0.1:{grpc_port}",
                                   lambda: _grpc_counts(f"{base}/metrics"))
        except ServerError as exc:
            for w in workloads.values():
                self._skip(w, FERRY, _ferry_rest_routes(w), WRK, _first_line(exc))

    def _secured_connections(self) -> list[int]:
        return [c for c in self.o.connections if c == SECURED_CONNECTIONS]

    def _variants(self) -> list[Variant]:
        """Issue 15's secured runs; their credentials are made once per benchmark run."""
        if self.variants is None:
            self.variants = security.variants(self.o.workdir / "security")
        return self.variants

    def ferry_secured(self, w: Workload) -> None:
        """W1's V2 JSON at 64 connections with an API key, with a JWT, and over TLS.

        Each runs against its own ``ferry serve`` (W1 only) started with its ``[security]``
        settings. Before the load, a request without the credential must be refused with 401
        (else authentication is not on and the figure would not be one with it). A plain
        control server, started the same way without ``[security]``, runs before the first
        variant and after each one (control, key, control, JWT, control...): each secured
        figure is paired with the two controls right beside it, a minute apart (this
        machine's speed drifts by tens of percent between rounds, and within one: at 13:04
        every variant of a round read 87-90 % of controls two minutes away, the console's
        included, which costs nothing measurable A/B).
        """
        connections = self._secured_connections()
        if not connections:
            return
        sequence = [security.control()]
        for each in self._variants():
            sequence += [each, security.control()]
        for variant in sequence:
            if variant.missing is not None:
                log(f"{w.key} ferry {variant.route}: {variant.missing}")
                self._skip(w, FERRY, [variant.route], WRK, variant.missing, connections)
                continue
            http_port, grpc_port = free_port(), free_port()
            base = f"{variant.scheme}://127.0.0.1:{http_port}"
            url = f"{base}/v2/models/{w.model}/infer"
            name = f"ferry-{_slug(variant.route.split(',')[-1])}"
            service = self.ferry_service(name, http_port, grpc_port, [w.model], variant.env)
            log(f"ferry serve ({variant.route}) on :{http_port}")

            def ready(base: str = base, variant: Variant = variant) -> bool:
                return http_get(f"{base}/v2/health/ready", timeout=2,
                                context=variant.context())[0] == 200

            try:
                with running(service, ready, timeout=120):
                    refused = (None if variant.route == V2_JSON_CONTROL
                               else _unrefused(url, w.v2_body(), variant))
                    if refused is not None:
                        self.wrong_answers += 1
                        self._skip(w, FERRY, [variant.route], WRK, refused, connections)
                        continue
                    with ConsoleWatcher(f"{base}/console/api/live", on=variant.console):
                        self.http_runs(service, w, FERRY, variant.route, url, w.v2_body(),
                                       check_v2, variant=variant, connections=connections)
            except ServerError as exc:
                self._skip(w, FERRY, [variant.route], WRK, _first_line(exc), connections)

    def footprint(self) -> None:
        """Issue 19's in-process footprint (benchmarks/footprint.py), its own results file."""
        out = self.o.out.with_name("results-footprint.md")
        try:
            footprint.run(self.o.workdir / "footprint", out,
                          seed_h5=self.o.workdir / "seed" / "my_model.h5",
                          machine=self.report.machine)
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            self.report.notes.append(f"Footprint (issue 19): not measured: {_first_line(exc)}")
            return
        self.report.notes.append(f"Footprint (issue 19): ferry in a program, see {out.name}.")

    def optimize_versions(self) -> None:
        """Issue 18's optimized versions beside their parent (benchmarks/optimize_bench.py),
        its own results file."""
        out = self.o.out.with_name("results-optimize.md")
        try:
            optimize_bench.run(self.o.workdir / "optimize", out, duration=self.o.duration,
                               warmup=self.o.warmup, machine=self.report.machine)
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            self.report.notes.append(f"Optimize (issue 18): not measured: {_first_line(exc)}")
            return
        self.report.notes.append(f"Optimize (issue 18): optimized versions, see {out.name}.")

    def ray_serve(self, w: Workload) -> None:
        """Issue 20's ferry on Ray Serve beside plain and no-op Ray Serve deployments
        (benchmarks/ray_bench.py), its own results file."""
        out = self.o.out.with_name("results-ray.md")
        try:
            from benchmarks import ray_bench

            ray_bench.run(self.o.workdir / "ray", out, self.repo, w,
                          duration=self.o.duration, warmup=self.o.warmup,
                          machine=self.report.machine)
        except (ImportError, RuntimeError, subprocess.SubprocessError, OSError) as exc:
            self.report.notes.append(f"Ray Serve (issue 20): not measured: {_first_line(exc)}")
            return
        self.report.notes.append(f"Ray Serve (issue 20): ferry on Ray, see {out.name}.")

    def cold_start(self, w: Workload) -> None:
        """Seconds from launching ``ferry serve`` on the demo model to its first 200 answer."""
        why = self.ferry_available()
        if why is not None:
            self.report.cold_start_note = why
            return
        for attempt in range(self.o.cold_runs):
            http_port, grpc_port = free_port(), free_port()
            url = f"http://127.0.0.1:{http_port}/v2/models/{w.model}/infer"
            service = self.ferry_service(f"ferry-cold-{attempt}", http_port, grpc_port,
                                         [w.model])
            try:
                with service:
                    from benchmarks.processes import wait_until

                    seconds = wait_until(service, post_ok(url, w.v2_body(), timeout=5),
                                         timeout=60, interval=0.005)
                    self._verify(url, w.v2_body(), check_v2, w)
            except (ServerError, WrongAnswerError) as exc:
                self.report.cold_start_note = f"cold start failed: {_first_line(exc)}"
                return
            log(f"cold start {attempt + 1}: {seconds:.2f} s")
            self.report.cold_start_s.append(seconds)

    # ------------------------------------------------------------------ overload

    def overload_runs(self, w: Workload) -> None:
        """Issue 16: W1's V2 JSON past the connection count that saturates ``ferry serve``.

        On a server with default settings (back-pressure): short probe runs at 4..64
        connections find the peak 2xx answers/s and the saturating count (the smallest
        reaching 90 % of the peak, ``benchmarks.overload``); then a normal warm-up and run
        at 1 x, 4 x and 16 x that count. Then 4 x and 16 x again on a server in refusal mode
        (``max_waiting`` 0, ``max_queue`` 16: 429 at once past the queue).
        """
        why = self.ferry_available()
        if why is not None:
            self.report.overload_note = why
            log(why)
            return
        self._overload_service(w, OVERLOAD_WAIT, {}, None)
        plan = self.report.overload
        if plan is None:
            return
        refuse = {"FERRY_MODEL_DEFAULTS__MAX_WAITING": "0",
                  "FERRY_MODEL_DEFAULTS__MAX_QUEUE": str(overload.REFUSE_MAX_QUEUE)}
        self._overload_service(w, OVERLOAD_REFUSE, refuse,
                               [c for m, c in plan.runs if m in overload.REFUSE_MULTIPLES])

    def _overload_service(self, w: Workload, server: str, env: dict[str, str],
                          connections: list[int] | None) -> None:
        """One ``ferry serve`` of W1 with ``env`` and the goodput runs at ``connections``;
        None: first the probe, which sets the plan (``report.overload``) and so the counts.
        """
        http_port, grpc_port = free_port(), free_port()
        base = f"http://127.0.0.1:{http_port}"
        url = f"{base}/v2/models/{w.model}/infer"
        name = "ferry-overload-" + ("refuse" if env else "defaults")
        service = self.ferry_service(name, http_port, grpc_port, [w.model], env or None)
        log(f"ferry serve ({server}) on :{http_port}")
        try:
            with running(service, lambda: http_get(f"{base}/v2/health/ready",
                                                   timeout=2)[0] == 200, timeout=120):
                if connections is None:
                    plan = self._saturation(service, w, url)
                    if plan is None:
                        return
                    connections = [conns for _, conns in plan.runs]
                self.http_runs(service, w, server, V2_JSON, url, w.v2_body(), check_v2,
                               connections=connections, probe=server == OVERLOAD_REFUSE)
        except ServerError as exc:
            if connections is None:  # the server with defaults never served: no plan
                self.report.overload_note = f"{server}: {_first_line(exc)}"
            else:
                self._skip(w, server, [V2_JSON], WRK, _first_line(exc), connections)

    def _saturation(self, service: Service, w: Workload, url: str
                    ) -> overload.OverloadPlan | None:
        """The probe: short runs at 4..64 connections (one warm-up first); sets the plan."""
        seconds = min(self.o.duration, overload.PROBE_SECONDS)
        for index, conns in enumerate(overload.PROBE_CONNECTIONS):
            self.http_runs(service, w, OVERLOAD_WAIT, OVERLOAD_PROBE, url, w.v2_body(),
                           check_v2, connections=[conns], seconds=seconds,
                           warmup=self.o.warmup if index == 0 else 0)
        good = {conns: result.good_rps for conns in overload.PROBE_CONNECTIONS
                if (result := self.report.find(w.key, OVERLOAD_WAIT, OVERLOAD_PROBE,
                                               conns)) is not None}
        found = overload.saturation(good)
        if found is None:
            self.report.overload_note = ("the saturation probe got no 2xx answer (see its "
                                         "rows in the load runs)")
            return None
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        from ferry.settings import ServerSettings

        server_max = ServerSettings.model_fields["http_max_connections"].default
        plan = overload.plan(found, overload.connection_cap(soft, int(server_max)))
        self.report.overload = plan
        log(f"overload: peak {found.peak:,.0f} 2xx/s at {found.peak_connections} connections; "
            f"saturating count {found.connections}; runs at "
            + ", ".join(f"{m} x = {c}" for m, c in plan.runs)
            + (f" ({plan.note})" if plan.note else ""))
        return plan

    # ------------------------------------------------------------------ driver

    def write(self) -> None:
        """Write results.md (called after every group)."""
        self.o.out.write_text(render(self.report), encoding="utf-8")

    def run(self) -> int:
        """Run the chosen groups; return the exit status (1 if any answer was wrong)."""
        started = time.monotonic()
        workloads = self.prepare()
        w1 = workloads["W1"]
        compared: list[tuple[str, Callable[[], None]]] = [
            ("raw", lambda: self.raw_ort(workloads)),
            ("fastapi", lambda: self.fastapi_all(workloads)),
            ("ferry", lambda: self.ferry(workloads)),
        ]
        once: list[tuple[str, Callable[[], None]]] = [
            ("flask", lambda: self.flask(w1)),
            ("noop", lambda: self.noop_all(workloads)),
            ("cold", lambda: self.cold_start(w1)),
            ("overload", lambda: self.overload_runs(w1)),
            ("footprint", self.footprint),
            ("ray", lambda: self.ray_serve(w1)),
            ("optimize", self.optimize_versions),
        ]
        # The compared servers run in every round, in reversed order every other round (A B,
        # B A, ...): a slow spell of the shared machine then hits both sides, and each
        # figure is the best of its rounds.
        for number in range(1, self.o.rounds + 1):
            self.round = number
            log(f"round {number} of {self.o.rounds}")
            for group, step in compared if number % 2 else compared[::-1]:
                if group in self.o.groups:
                    step()
                    self.write()
        for group, step in once:
            if group in self.o.groups:
                step()
                self.write()
        load = os.getloadavg()
        self.report.notes.append(
            f"Whole run: {(time.monotonic() - started) / 60:.1f} min; load average after: "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}. The machine has "
            f"{os.cpu_count()} cores; anything else running on it competes with both.")
        self.write()
        log(f"wrote {self.o.out}")
        return 1 if self.wrong_answers else 0


def _probe_finish(process: subprocess.Popen[str] | None, seconds: float
                  ) -> tuple[prober.ProbeResult | None, str]:
    """The probe's report, or None and why (the run's figure stands without it)."""
    if process is None:
        return None, ""
    try:
        out, _ = process.communicate(timeout=seconds + 30)
        return prober.parse_probe(out), ""
    except (LoadgenError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        return None, f"the refusal probe failed: {_first_line(exc)}"


class ConsoleWatcher:
    """What an open console page does: GET its live view every second (on the load core).

    A context manager; off (``on`` False) it does nothing. It fails the run (ServerError)
    when no poll was answered 200, so a console that is off cannot pass for a cheap one.
    """

    def __init__(self, url: str, *, on: bool, interval: float = 1.0) -> None:
        self.url = url
        self.on = on
        self.interval = interval
        self.answered = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ConsoleWatcher:
        if self.on:
            self._thread = threading.Thread(target=self._poll, name="console-watcher",
                                            daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {LOAD_CORE})
        while not self._stop.is_set():
            with contextlib.suppress(OSError):  # a refused or timed-out poll: not answered
                if http_get(self.url, timeout=5)[0] == 200:
                    self.answered += 1
            self._stop.wait(self.interval)

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(10)
        if not self.answered and exc[0] is None:
            raise ServerError(f"the console's live view ({self.url}) never answered 200")


def _grpc_counts(metrics_url: str | None) -> dict[str, float] | None:
    if metrics_url is None:
        return None
    try:
        status, body = http_get(metrics_url, timeout=10)
    except OSError:
        return None
    return metrics.grpc_status_counts(body.decode()) if status == 200 else None


SECURED_ROUTES = (V2_JSON_API_KEY, V2_JSON_JWT, V2_JSON_TLS, V2_JSON_CONTROL)


def _unrefused(url: str, body: bytes, variant: Variant) -> str | None:
    """None if a request without ``variant``'s credential gets 401 (or it has none), else why.

    The message names the status only: never the credential, nor the answer.
    """
    if not variant.headers:
        return None
    try:
        status, _ = http_post(url, body, timeout=30, context=variant.context())
    except OSError as exc:
        return f"a request without the credential failed: {_first_line(exc)}"
    if status == 401:
        return None
    return (f"WRONG SET-UP: a request without the credential answered {status}, not 401: "
            "authentication is not on")


def _ferry_rest_routes(w: Workload) -> list[str]:
    """ferry's wrk routes for a workload; the no-Content-Type variant is measured on W1 only."""
    routes = [PREDICT, V2_JSON, V2_BINARY]
    return [*routes, V2_JSON_NO_TYPE] if w.key == "W1" else routes


def noop_grpc_counts(target: str) -> dict[str, float] | None:
    """ModelInfer calls the no-op gRPC servicer has answered (all OK), None if unreachable."""
    import grpc

    from benchmarks.baselines import noop_grpc

    try:
        with grpc.insecure_channel(target) as channel:
            answered = channel.unary_unary(noop_grpc.COUNT_METHOD)(b"", timeout=5)
    except grpc.RpcError:
        return None
    return {"OK": float(int(answered))}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def check_tools() -> None:
    """Fail early, naming the fix, when a load generator is missing."""
    missing = [tool for tool in ("wrk", "h2load", "taskset") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `make bench` (it installs wrk and "
                         "nghttp2-client with apt-get) or install them yourself")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the benchmark needs two cores: one for the server, one for the load")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m benchmarks``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load run")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per run")
    parser.add_argument("--connections", default="64,1", help="comma-separated")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"groups to run, comma-separated, of {','.join(GROUPS)}")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of raw ORT, FastAPI and ferry (order reversed every other "
                        "round); each figure is the best of its rounds")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.md")
    args = parser.parse_args(argv)
    groups = frozenset(g.strip() for g in args.only.split(",") if g.strip())
    unknown = groups - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s) {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    check_tools()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    options = Options(duration=args.duration, warmup=args.warmup, workdir=args.workdir.resolve(),
                      out=args.out.resolve(), groups=groups, cold_runs=args.cold_runs,
                      connections=tuple(int(c) for c in args.connections.split(",")),
                      rounds=args.rounds)
    options.workdir.mkdir(parents=True, exist_ok=True)
    return Bench(options).run()
