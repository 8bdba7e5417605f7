"""``ferry serve`` as a user runs it: a real process, real ports, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from builders import mlp_onnx
from ferry.formats import import_model
from ferry.repository import Repository
from serving import ROOT, ferry_serve, free_port

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


def test_a_worker_that_dies_stops_the_whole_server(tmp_path):
    import re

    repo = _repository(tmp_path)
    with ferry_serve(repo.root, "--workers", "2", timeout=120) as server:
        # Each worker logs its own start line; the banner can come before the second one
        # reaches the log file, so wait (bounded) for both.
        deadline = time.monotonic() + 10
        while True:
            pids = [int(p) for p in
                    re.findall(r"Started server process \[(\d+)\]", server.output())]
            if len(pids) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(pids) == 2, server.output()
        os.kill(pids[0], signal.SIGKILL)  # a crash, or the OOM killer
        # The survivor drains and exits, and the exit code says the server failed, so a
        # supervisor restarts all of it instead of leaving one worker serving alone.
        assert server.process.wait(30) == 1
        assert "exited with code -9; stopping the others" in server.output()
        with pytest.raises(ProcessLookupError):
            os.kill(pids[1], 0)


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
