"""``ferry serve`` as a user runs it: a real process, real ports, real signals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from builders import mlp_onnx
from ferry.formats import import_model
from ferry.repository import Repository
from loadclients import CUT, LOST, OK, WRONG, RestLoad, owner_pid
from serving import ROOT, Server, ferry_serve, free_port

ROW = [0.5, -1.0, 2.0, 0.25]


def _repository(tmp_path: Path, versions: int = 1) -> Repository:
    repo = Repository(tmp_path / "repo")
    for seed in range(versions):
        _add_version(repo, tmp_path, seed)
    return repo


def _add_version(repo: Repository, tmp_path: Path, seed: int) -> None:
    folder = tmp_path / f"src-{seed}"
    folder.mkdir()
    import_model(repo, mlp_onnx(folder / "m.onnx", seed=seed), "mlp")


def _wait_for_version(url: str, version: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/v2/models/mlp").json().get("versions") == [version]:
            return
        time.sleep(0.1)
    raise AssertionError(f"version {version} was not served within {timeout} s")


def test_serve_answers_rest_and_grpc_then_drains_on_sigterm(tmp_path):
    repo = _repository(tmp_path)
    with ferry_serve(repo.root) as server:
        answer = httpx.post(f"{server.url}/predict", json={"data": [ROW]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "mlp" and answer.json()["version"] == "1"
        from ferry.client import GrpcClient

        with GrpcClient(server.grpc) as client:
            scores = client.predict("mlp", [ROW])
        np.testing.assert_allclose(scores, answer.json()["predictions"], rtol=1e-6)
        assert "ferry is serving mlp" in server.output()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        assert "stopped" in server.output()


def test_serving_an_onnx_model_never_imports_a_training_framework(tmp_path):
    repo = _repository(tmp_path)
    script = textwrap.dedent(f"""
        import asyncio, sys
        from ferry.server import serve
        from ferry.settings import load_settings

        async def main():
            stop = asyncio.Event()
            settings = load_settings(repository={str(repo.root)!r}, http_port=0, grpc_port=0,
                                     log_format="text")
            await serve(settings, on_ready=lambda where: stop.set(), stop=stop)

        asyncio.run(main())
        heavy = ("tensorflow", "keras", "torch", "sklearn", "xgboost", "lightgbm", "pypmml")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_sighup_hot_swaps_to_a_new_version(tmp_path):
    repo = _repository(tmp_path)
    with ferry_serve(repo.root) as server:
        _add_version(repo, tmp_path, seed=7)
        server.process.send_signal(signal.SIGHUP)
        _wait_for_version(server.url, "2")
        answer = httpx.post(f"{server.url}/predict", json={"data": [ROW]}).json()
        assert answer["version"] == "2"


def test_watch_notices_a_new_version_directory(tmp_path):
    repo = _repository(tmp_path)
    with ferry_serve(repo.root, "--watch", env={"FERRY_WATCH_INTERVAL": "0.2"}) as server:
        _add_version(repo, tmp_path, seed=8)
        _wait_for_version(server.url, "2")


def test_two_workers_share_the_ports(tmp_path):
    repo = _repository(tmp_path)
    with ferry_serve(repo.root, "--workers", "2", timeout=120) as server:
        with httpx.Client(base_url=server.url) as http:
            for _ in range(20):
                assert http.post("/predict", json={"data": [ROW]}).status_code == 200
        # Each worker counts in the shared directory; a scrape reports both together.
        metrics = httpx.get(f"{server.url}/metrics").text
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                      if line.startswith("ferry_requests_total{") and 'status="200"' in line)
        assert counted == 20
        assert server.output().count("Started server process") == 2


def test_settings_from_a_toml_file_and_the_environment(tmp_path):
    repo = _repository(tmp_path)
    config = tmp_path / "ferry.toml"
    config.write_text(textwrap.dedent("""
        default_model = "mlp"
        [model_defaults]
        max_queue = 3
    """))
    with ferry_serve(repo.root, "--config", str(config)) as server:
        assert httpx.post(f"{server.url}/predict", json={"data": [ROW]}).status_code == 200


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--config", "missing.toml"], {}, "--config missing.toml: no such file"),
    ([], {"FERRY_HTTP_PORT": "eighty"}, "http_port = 'eighty'"),
    ([], {"FERRY_MODEL_DEFAULTS__BATCHING__MAX_BATCH_SIZE": "0"}, "max_batch_size"),
    (["--models", "ghost"], {}, "model 'ghost' is not in repository"),
    (["--models", "mlp:5"], {}, "model 'mlp' has no version 5"),
], ids=["no-config-file", "bad-env-port", "bad-batch-size", "unknown-model", "unknown-version"])
def test_bad_settings_stop_the_server_with_one_line(tmp_path, args, env, message):
    repo = _repository(tmp_path)
    ports = {"FERRY_HTTP_PORT": str(free_port()), "FERRY_GRPC_PORT": str(free_port())}
    result = subprocess.run(
        [sys.executable, "-m", "ferry", "serve", str(repo.root), *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, **ports, **env})
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_port_is_a_clear_error(tmp_path):
    repo = _repository(tmp_path)
    with ferry_serve(repo.root) as server:
        port = server.url.rsplit(":", 1)[1]
        result = subprocess.run(
            [sys.executable, "-m", "ferry", "serve", str(repo.root), "--http-port", port,
             "--grpc-port", str(free_port())],
            capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert result.returncode == 2
        assert f"cannot listen for REST on 127.0.0.1:{port}" in result.stderr


def test_readme_curl_lines_work_against_make_serve_output(tmp_path):
    """The V2 body in examples/seed/v2.json is the sample digit, as make serve prints."""
    body = json.loads((ROOT / "examples" / "seed" / "v2.json").read_text())
    sample = json.loads((ROOT / "examples" / "seed" / "sample.json").read_text())
    (tensor,) = body["inputs"]
    assert tensor["shape"] == [1, 64] and tensor["data"] == sample["data"][0]


def test_json_logs_carry_the_request_id_of_a_refused_request(tmp_path):
    repo = _repository(tmp_path)
    with ferry_serve(repo.root, "--log-format", "json") as server:
        answer = httpx.post(f"{server.url}/predict", json={"data": [[1.0, 2.0]]},
                            headers={"X-Request-ID": "trace-42"})
        assert answer.status_code == 400
        assert answer.headers["X-Request-ID"] == "trace-42"
        generated = httpx.post(f"{server.url}/predict/ghost", json={"data": [ROW]})
        assert len(generated.headers["X-Request-ID"]) == 32
        deadline = time.monotonic() + 10
        while "trace-42" not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = [json.loads(line) for line in server.output().splitlines()
             if line.startswith("{")]
    refused = [entry for entry in lines if entry.get("request_id") == "trace-42"]
    assert refused, server.output()
    assert refused[0]["level"] == "info" and refused[0]["status"] == 400
    assert "expected FP32 with shape [-1, 4], got shape [1, 2]" in refused[0]["message"]
    assert any(entry.get("request_id") == generated.headers["X-Request-ID"] for entry in lines)


def _worker_pids(server: Server, count: int, timeout: float = 60.0) -> list[int]:
    """The PIDs of the first ``count`` worker starts, in order, waiting (bounded) for them.

    Each worker logs its own start line, and the banner can come before the last one
    reaches the log file: never read the output once and hope.
    """
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in re.findall(r"Started server process \[(\d+)\]", server.output())]
        if len(pids) >= count:
            return pids[:count]
        assert time.monotonic() < deadline, f"{len(pids)} of {count} workers:\n{server.output()}"
        time.sleep(0.05)


def _gone(pid: int, timeout: float = 30.0) -> None:
    """Wait (bounded) until ``pid`` has exited (reaped, or a zombie nobody reaps yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state == "Z":
            return
        assert time.monotonic() < deadline, f"process {pid} still there after {timeout} s"
        time.sleep(0.05)


def _json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_a_killed_worker_is_replaced_while_the_others_keep_serving(tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    with ferry_serve(repo.root, "--workers", "2", timeout=120, log_format="json") as server:
        first, second = _worker_pids(server, 2)
        expected = httpx.post(f"{server.url}/predict", json={"data": [ROW]}).json()
        port = int(server.url.rsplit(":", 1)[1])
        load = RestLoad(port, "/predict", json.dumps({"data": [ROW]}).encode(), expected,
                        clients=16).start()
        try:
            load.wait_for(OK, 200)
            # Which worker holds each client's keep-alive connection (read from /proc).
            owners = {index: owner_pid(sock, [first, second])
                      for index, sock in enumerate(load.sockets) if sock is not None}
            assert set(owners.values()) == {first, second}, owners
            before = [Counter(counts) for counts in load.per_client]
            os.kill(first, signal.SIGKILL)  # a crash, or the OOM killer
            replacement = _worker_pids(server, 3)[2]
            settled = load.counts[OK]
            load.wait_for(OK, settled + 200)  # the load goes on, on survivor and replacement
        finally:
            load.stop()
        after = [counts - before[index] for index, counts in enumerate(load.per_client)]
        for index, owner in owners.items():
            if owner == second:  # the survivor's clients never noticed
                assert after[index][LOST] == after[index][CUT] == 0, (index, after[index])
            else:  # the killed worker's connection may fail once, then the client reconnects
                assert after[index][LOST] + after[index][CUT] <= 1, (index, after[index])
            assert after[index][WRONG] == 0 and after[index][OK] > 0, (index, after[index])
        restarts = [line for line in _json_lines(server.output())
                    if "restarting it in" in line["message"]]
        assert len(restarts) == 1, server.output()
        assert restarts[0]["level"] == "warning" and restarts[0]["pid"] == first
        assert restarts[0]["exitcode"] == -9 and restarts[0]["restart_in"] == 0.5
        assert "was killed by SIGKILL; restarting it in 0.5 s" in restarts[0]["message"]
        # The replacement serves: with the other original worker gone too, a new
        # connection can only be answered by a replacement.
        os.kill(second, signal.SIGKILL)
        _gone(first)
        _gone(second)
        answer = httpx.post(f"{server.url}/predict", json={"data": [ROW]}, timeout=30)
        assert answer.status_code == 200 and answer.json() == expected
        os.kill(replacement, 0)  # still there
    assert server.process.returncode == 0, server.output()


def test_workers_stop_when_their_supervisor_dies(tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    with ferry_serve(repo.root, "--workers", "2", timeout=120) as server:
        pids = _worker_pids(server, 2)
        server.process.kill()  # the parent: SIGKILL, no chance to stop its workers
        server.process.wait(10)
        for pid in pids:
            _gone(pid)
    assert server.output().count("is gone; stopping this worker") == 2, server.output()


def test_a_worker_that_keeps_dying_at_start_stops_the_server_with_one_line(
        tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    http_port, grpc_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    # The real `ferry serve`, with the restart backoff shortened (the supervisor's delays
    # are module constants of ferry.server, read in this parent process).
    script = ("import sys, ferry.server as s; s.RESTART_DELAY = 0.1; "
              "from ferry.cli import main; sys.exit(main(sys.argv[1:]))")
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", script, "serve", str(repo.root), "--workers", "2",
             "--http-port", str(http_port), "--grpc-port", str(grpc_port),
             "--log-format", "text"],
            stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log)
    try:
        deadline = time.monotonic() + 120
        while "ferry is serving" not in server.output():
            assert process.poll() is None and time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        first, second = _worker_pids(server, 2)
        # The stored model changes under the server: a worker started now fails its hash
        # check, while the running ones keep the version they loaded.
        with (repo.root / "mlp" / "1" / "model.onnx").open("ab") as model:
            model.write(b"\0")
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while "start failure 1 of" not in server.output():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        # Meanwhile the survivor answers.
        answer = httpx.post(f"{server.url}/predict", json={"data": [ROW]}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert process.wait(120) == 1
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    output = server.output()
    stops = [line for line in output.splitlines() if "stopping the server" in line]
    assert len(stops) == 1, output
    assert re.search(r"worker ferry-worker-\d exited with code 1 before it was ready: .*"
                     r"\(5 times in a row\); stopping the server", stops[0]), stops[0]
    assert "mlp" in stops[0] and "Traceback" not in output
    assert output.count("restarting it in") == 5  # the kill, then 4 failed starts
    _gone(second)


def test_workers_that_cannot_start_are_one_line_and_exit_2(tmp_path):
    repo = _repository(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "ferry", "serve", str(repo.root), "--models", "ghost",
         "--workers", "2", "--http-port", str(free_port()), "--grpc-port", str(free_port())],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("model 'ghost' is not in repository") == 1
    assert "Traceback" not in result.stderr


def test_serve_help_teaches_defaults_signals_and_settings():
    result = subprocess.run([sys.executable, "-m", "ferry", "serve", "--help"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={**os.environ, "COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Usage: ferry serve [OPTIONS] [REPO]" in text
    for phrase in ("(default: 127.0.0.1;", "(default: 8000;", "(default: 8001;",
                   "kill -HUP PID", "FERRY_*", "REPO/NAME/config.toml",
                   "ferry serve model-repository --models digits,fraud:3 --workers 2"):
        assert phrase in text, phrase
