"""The README's commands, run as a new user would (subprocess, real files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_make_serve_builds_the_demo_and_predicts(tmp_path):
    env = {**os.environ, "REPO": str(tmp_path / "repo")}
    result = subprocess.run(["make", "serve", f"REPO={tmp_path / 'repo'}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "==> training the seed network" in result.stdout
    assert '"labels": [\n    "0"\n  ]' in result.stdout
