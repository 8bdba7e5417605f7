"""The README's commands, run as a new user would (subprocess, real files)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def ferry(*args: str, repo: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ferry"), "--repo", str(repo), *args], input=stdin,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_demo_then_predict_from_stdin(tmp_path):
    repo = tmp_path / "repo"
    demo = ferry("demo", "--epochs", "5", "--workdir", str(tmp_path / "build"), repo=repo)
    assert demo.returncode == 0, demo.stderr
    assert "test accuracy on 360 digits: Keras" in demo.stdout
    assert "✓ training the seed network" in demo.stderr
    keras_acc, onnx_acc = (float(p.split()[-1].rstrip(",")) for p in
                           demo.stdout.split("Keras")[1].split("(")[0].split("ONNX Runtime"))
    assert keras_acc == onnx_acc and keras_acc > 0.8
    assert (tmp_path / "build" / "my_model.h5").is_file()

    sample = (ROOT / "examples" / "seed" / "sample.json").read_text()
    result = ferry("predict", "digits", repo=repo, stdin=sample)
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["model_name"] == "digits" and response["labels"] == ["0"]


def test_errors_are_one_line_without_traceback(tmp_path):
    result = ferry("show", "nope", repo=tmp_path / "repo")
    assert result.returncode == 2
    assert result.stderr.startswith("error: model 'nope' is not in repository")
    assert "Traceback" not in result.stderr


def test_make_serve_builds_the_demo_serves_it_and_its_printed_commands_work(tmp_path):
    """`make serve` as the README says: demo model built, served, the printed lines work."""
    from serving import free_port

    http_port, grpc_port = free_port(), free_port()
    process = subprocess.Popen(
        ["make", "serve", f"REPO={tmp_path / 'repo'}", f"HTTP_PORT={http_port}",
         f"GRPC_PORT={grpc_port}"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:  # until the server says it is serving (or dies)
            lines.append(line)
            if line.startswith("ferry is serving"):
                break
        output = "".join(lines)
        assert "ferry is serving digits" in output, output
        assert "==> training the seed network" in output
        commands = [line.strip() for line in lines if line.startswith("  curl ")
                    or line.startswith("  .venv/bin/python -c")]
        assert len(commands) == 3, output
        predict, v2, grpc = (subprocess.run(c, shell=True, cwd=ROOT, capture_output=True,
                                            text=True, timeout=60) for c in commands)
        for result in (predict, v2, grpc):
            assert result.returncode == 0, result.stderr
        answer = json.loads(predict.stdout)
        assert answer["model"] == "digits" and answer["labels"] == ["0"]
        scores = answer["predictions"][0]
        assert max(range(10), key=scores.__getitem__) == 0
        v2_answer = json.loads(v2.stdout)
        assert v2_answer["model_name"] == "digits"
        assert v2_answer["outputs"][0]["data"] == pytest.approx(scores, rel=1e-5)
        assert grpc.stdout.startswith("[[")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
        if process.stdout is not None:
            process.stdout.close()
