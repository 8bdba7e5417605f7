"""The README's "Use ferry in your program / on a device" examples, run as a reader would.

Every block of the section, in order, in a fresh directory holding a ``model-repository``
with a ``digits`` model (a logistic regression trained here on scikit-learn's digits: the
same 64-pixel input as the seed network, without training Keras) and the seed's sample
request, with the virtualenv's ``python`` and ``ferry`` first on the PATH. Then the longer
example, examples/in_process/predict.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# ruff: noqa: E402
from extras import require

require("sklearn")
require("skops")

import skops.io as sio
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from ferry.formats import import_model
from ferry.repository import Repository

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
TITLE = "\n## Use ferry in your program / on a device\n"


def _section() -> str:
    text = README.read_text()
    start = text.index(TITLE)
    return text[start:text.index("\n## ", start + 1)]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    x, y = load_digits(return_X_y=True)
    sio.dump(LogisticRegression(max_iter=300).fit(x.astype(np.float32), y),
             tmp_path / "digits.skops")
    import_model(Repository(tmp_path / "model-repository"), tmp_path / "digits.skops", "digits")
    (tmp_path / "examples" / "seed").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "seed" / "sample.json", tmp_path / "examples" / "seed")
    return tmp_path


def _env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("FERRY_REPOSITORY", None)
    return env


@pytest.mark.timeout(600)
def test_every_in_process_example_in_the_readme_runs(workdir):
    blocks = [(lang, code) for lang, code in BLOCK.findall(_section())
              if lang in ("python", "bash")]
    assert [lang for lang, _ in blocks] == ["python", "bash", "python"]
    out = []
    for number, (lang, code) in enumerate(blocks):
        if lang == "python":
            script = workdir / f"example{number}.py"
            script.write_text(code)
            command = [sys.executable, str(script)]
        else:
            command = ["bash", "-euo", "pipefail", "-c", code]
        result = subprocess.run(command, cwd=workdir, env=_env(), capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"{code}\n{result.stderr[-3000:]}"
        out.append(result.stdout)
    assert out[0].splitlines()[0] == "FP32 with shape [-1, 64]"
    assert "probabilities (1, 10)" in out[0]
    bundle = workdir / "digits-bundle" / "digits" / "1"
    assert sorted(p.name for p in bundle.iterdir()) == [
        "manifest.json", "model.ort", "model.required_operators.config"]
    assert out[2].startswith("1 {") and "(1, 10)" in out[2]


def test_the_longer_example_runs(workdir):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "in_process" / "predict.py"),
         "model-repository", "digits:1"],
        cwd=workdir, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("loaded digits:1 from ")
    assert "predicted: ['0']" in lines
    assert ("refused: input 'input': expected FP32 with shape [-1, 64], got shape [64]"
            in lines)
    assert lines[-1] == "8 predictions from 4 threads"
    missing = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "in_process" / "predict.py"), "nowhere"],
        cwd=workdir, env=_env(), capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no model repository or bundle at 'nowhere'"


def test_the_readme_figures_come_from_the_benchmark_file():
    section = _section()
    results = (ROOT / "benchmarks" / "results-footprint.md").read_text()
    assert "benchmarks/results-footprint.md" in section
    best = min(float(m) for m in re.findall(
        r"\| `ferry.load\(bundle\).predict\(row\)` \(core install\)[^|]*\| [\d,]+ \| ([\d.]+) \|",
        results))
    assert f"| {best} / " in section  # the README quotes the best round's p50
