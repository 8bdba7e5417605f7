"""The core install on a device (issue 19 item 5): a fresh virtual environment holding only
``pip install ferry`` (this checkout, with its core dependencies and nothing else) loads an
exported bundle with ``ferry.load`` and predicts, and importing ferry there pulls no web,
gRPC, CLI or framework module. The ``ferry`` command there names the extra it needs. And
with ``ferry[serve]`` alone, the CLI imports an ONNX model and ``ferry serve`` answers.

The environment is made with ``python -m venv`` (no system site-packages, which would hide a
missing dependency) and pip, pinned by requirements/constraints.txt; pip's cache (or the
local wheels pip is set up with) makes it quick after the first run.
"""

from __future__ import annotations

import json
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

from ferry.cli import main
from ferry.formats import import_model
from ferry.repository import Repository

ROOT = Path(__file__).resolve().parents[2]

#: Top-level modules the core install must not import: web, gRPC, the CLI's, frameworks.
FORBIDDEN = ("starlette", "uvicorn", "fastapi", "httptools", "uvloop", "orjson", "httpx",
             "grpc", "google", "prometheus_client", "pydantic_settings", "typer", "click",
             "rich", "onnx", "tensorflow", "keras", "torch", "sklearn", "skops", "xgboost",
             "lightgbm", "pypmml", "cryptography", "jwt")

CHECK = r"""
import json, sys, time
start = time.perf_counter()
import ferry
imported = sorted({m.partition(".")[0] for m in sys.modules})
import numpy as np
rows = np.load(sys.argv[2])
answers = {}
for bundle in sys.argv[1].split(","):
    with ferry.load(bundle) as model:
        outputs = model.predict(rows)
        answers[bundle] = {name: array.tolist() for name, array in outputs.items()}
        try:
            model.predict(rows[0])
        except ferry.FerryError as exc:
            message = str(exc)
after = sorted({m.partition(".")[0] for m in sys.modules})
print(json.dumps({"imported": imported, "after": after, "answers": answers,
                  "message": message, "file": ferry.__file__}))
"""


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
         "--disable-pip-version-check", "-c", str(ROOT / "requirements" / "constraints.txt"),
         str(ROOT)],
        capture_output=True, text=True, timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return venv


# Long by nature: a virtual environment and a pip install of the core (~20 s with a warm
# cache, minutes with a cold one), then a conversion to the ORT format.
@pytest.mark.timeout(1200)
def test_core_install_loads_an_exported_bundle_and_imports_nothing_heavy(core_venv, tmp_path):
    installed = subprocess.run(
        [str(core_venv / "bin" / "python"), "-m", "pip", "list", "--format", "json",
         "--disable-pip-version-check"], capture_output=True, text=True, timeout=120, check=True)
    names = {p["name"].lower().replace("_", "-") for p in json.loads(installed.stdout)}
    assert {"ferry", "numpy", "onnxruntime", "pydantic"} <= names
    assert not names & {"typer", "rich", "onnx", "starlette", "uvicorn", "grpcio", "httpx",
                        "tensorflow-cpu", "torch", "scikit-learn", "pydantic-settings"}

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    classifier = LogisticRegression(max_iter=300).fit(x[:1200], y[:1200])
    sio.dump(classifier, tmp_path / "digits.skops")
    repo = Repository(tmp_path / "repo")
    import_model(repo, tmp_path / "digits.skops", "digits")
    bundles = [tmp_path / "bundle", tmp_path / "bundle-ort"]
    assert main(["--repo", str(repo.root), "export", "digits:1", "-o", str(bundles[0])]) == 0
    assert main(["--repo", str(repo.root), "export", "digits:1", "-o", str(bundles[1]),
                 "--ort"]) == 0
    rows = x[1200:1210]
    np.save(tmp_path / "rows.npy", rows)

    result = subprocess.run(
        [str(core_venv / "bin" / "python"), "-c", CHECK, ",".join(map(str, bundles)),
         str(tmp_path / "rows.npy")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert str(core_venv) in report["file"]  # the installed ferry, not this checkout
    for when in ("imported", "after"):
        assert not set(report[when]) & set(FORBIDDEN), (when, set(report[when]) & set(FORBIDDEN))
    assert "onnxruntime" not in report["imported"]  # ferry.load imports it on first use
    assert report["message"].startswith("input ") and "got shape [64]" in report["message"]
    expected = classifier.predict_proba(rows)
    for bundle in bundles:
        outputs = {k: np.asarray(v) for k, v in report["answers"][str(bundle)].items()}
        (probabilities,) = [a for a in outputs.values() if a.dtype.kind == "f"]
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        (labels,) = [a for a in outputs.values() if a.dtype.kind == "i"]
        np.testing.assert_array_equal(labels, classifier.predict(rows))

    cli = subprocess.run([str(core_venv / "bin" / "ferry"), "--help"], capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 2
    assert "pip install 'ferry[cli]'" in cli.stderr and "Traceback" not in cli.stderr


def _venv(path: Path, spec: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    install = subprocess.run(
        [str(path / "bin" / "python"), "-m", "pip", "install", "-q",
         "--disable-pip-version-check", "-c", str(ROOT / "requirements" / "constraints.txt"),
         spec], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    return path


# Long by nature: a virtual environment with ferry[serve] (~25 s with a warm cache), then a
# `ferry serve` started and stopped.
@pytest.mark.timeout(1200)
def test_the_serve_extra_alone_runs_the_cli_and_the_server(tmp_path):
    """`pip install 'ferry[serve]'`: import, serve and predict work; the demo names its extra."""
    import os
    import signal
    import time
    import urllib.request

    from builders import mlp_onnx
    from serving import free_port

    venv = _venv(tmp_path / "venv", f"{ROOT}[serve]")
    ferry_bin = str(venv / "bin" / "ferry")
    mlp_onnx(tmp_path / "mlp.onnx")
    repo = tmp_path / "repo"
    done = subprocess.run([ferry_bin, "--repo", str(repo), "import", str(tmp_path / "mlp.onnx"),
                           "--name", "mlp"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    demo = subprocess.run([ferry_bin, "--repo", str(repo), "demo"], capture_output=True,
                          text=True, timeout=300)
    assert demo.returncode == 2 and "Traceback" not in demo.stderr, demo.stderr
    assert "pip install 'ferry[demo]'" in demo.stderr

    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([ferry_bin, "serve", str(repo), "--http-port", str(port),
                               "--grpc-port", str(free_port()), "--log-format", "text"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready",
                                            timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        row = [[0.5, -1.0, 2.0, 0.25]]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/models/mlp/infer", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                         "data": row}]}).encode())
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.loads(answer.read())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
        log.close()
    import onnxruntime as ort

    expected = ort.InferenceSession(str(tmp_path / "mlp.onnx")).run(
        None, {"x": np.asarray(row, dtype=np.float32)})[0]
    np.testing.assert_allclose(np.asarray(body["outputs"][0]["data"]).reshape(1, 3), expected,
                               rtol=1e-5)
