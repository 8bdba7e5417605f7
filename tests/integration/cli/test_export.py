"""``ferry export``: a version as a self-contained bundle that ferry.load runs (issue 19 item 5).

A logistic regression trained here on scikit-learn's digits is imported, exported as it is
and converted to ONNX Runtime's ``.ort`` format, and loaded back from the bundles.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

# ruff: noqa: E402
from extras import require

require("sklearn")
require("skops")

import skops.io as sio
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import ferry
from ferry.cli import main
from ferry.formats import ImportOptions, import_model
from ferry.repository import Repository, SigningKey, TrustedKeys


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def repo(tmp_path_factory, digits) -> Repository:
    x, y = digits
    root = tmp_path_factory.mktemp("export")
    path = root / "digits.skops"
    sio.dump(LogisticRegression(max_iter=300).fit(x[:1200], y[:1200]), path)
    repository = Repository(root / "repo")
    import_model(repository, path, "digits")
    import_model(repository, path, "native", options=ImportOptions(native=True))
    return repository


def _export(repo, *args):
    return main(["--repo", str(repo.root), "export", *args])


def test_a_bundle_loads_and_answers_like_the_repository(repo, tmp_path, digits, capsys):
    x, _ = digits
    assert _export(repo, "digits:1", "-o", str(tmp_path / "plain"), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == ["manifest.json", "model.onnx"] and report["signed"] is False
    assert report["members"] == []
    assert json.loads((tmp_path / "plain" / "bundle.json").read_text())["model"] == "digits:1"
    with ferry.load(repo.root, "digits:1") as stored, ferry.load(tmp_path / "plain") as bundled:
        assert (bundled.name, bundled.version) == ("digits", 1)
        assert bundled.signature == stored.signature
        expected, got = stored.predict(x[1200:]), bundled.predict(x[1200:])
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    manifest = json.loads((tmp_path / "plain" / "digits" / "1" / "manifest.json").read_text())
    assert manifest == json.loads((repo.root / "digits" / "1" / "manifest.json").read_text())


def test_ort_bundle_has_the_operator_config_and_the_same_answers(repo, tmp_path, digits,
                                                                   capsys):
    x, _ = digits
    out = tmp_path / "ort"
    assert _export(repo, "digits", "-o", str(out), "--ort") == 0
    assert "exported digits:1 to" in capsys.readouterr().out
    version = out / "digits" / "1"
    assert sorted(p.name for p in version.iterdir()) == [
        "manifest.json", "model.ort", "model.required_operators.config"]
    config = (version / "model.required_operators.config").read_text()
    # A linear classifier: ONNX-ML operators; no path of the build machine.
    assert "ai.onnx.ml;1;LinearClassifier" in config and str(tmp_path) not in config
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["artifact"] == "model.ort"
    assert set(manifest["files"]) == {"model.ort", "model.required_operators.config"}
    assert any("ORT format" in note for note in manifest["notes"])
    with ferry.load(repo.root, "digits:1") as stored, ferry.load(out) as bundled:
        expected, got = stored.predict(x[1200:]), bundled.predict(x[1200:])
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_a_signed_version_keeps_its_signature_unless_converted(repo, tmp_path):
    copy = Repository(tmp_path / "signed")
    shutil.copytree(repo.root / "digits", copy.root / "digits")
    key = SigningKey.generate()
    copy.sign("digits:1", key)
    keys_file = tmp_path / "trusted"
    keys_file.write_text(key.public_line("test") + "\n")
    assert _export(copy, "digits:1", "-o", str(tmp_path / "b")) == 0
    with ferry.load(tmp_path / "b", trusted_keys=TrustedKeys(keys_file)) as model:
        assert model.version == 1
    assert _export(copy, "digits:1", "-o", str(tmp_path / "o"), "--ort") == 0
    assert not (tmp_path / "o" / "digits" / "1" / "manifest.sig").exists()


def test_bad_exports_are_one_line_and_write_nothing(repo, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("mine")
    assert _export(repo, "digits", "-o", str(taken)) == 2
    assert "'" + str(taken) + "' exists and is not an empty directory" in capsys.readouterr().err
    assert sorted(p.name for p in taken.iterdir()) == ["x"]

    assert _export(repo, "native", "-o", str(tmp_path / "n"), "--ort") == 2
    err = capsys.readouterr().err
    assert "--ort converts ONNX models; native:1 runs on 'sklearn'" in err
    assert not (tmp_path / "n").exists()

    assert _export(repo, "nope", "-o", str(tmp_path / "m")) == 2
    assert "model 'nope' is not in repository" in capsys.readouterr().err

    damaged = Repository(tmp_path / "damaged")
    shutil.copytree(repo.root / "digits", damaged.root / "digits")
    artifact = damaged.root / "digits" / "1" / "model.onnx"
    artifact.chmod(0o644)
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    assert _export(damaged, "digits", "-o", str(tmp_path / "d")) == 2
    assert "does not match its recorded sha256" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_command_whose_extra_is_missing_names_it(repo, tmp_path):
    """`ferry serve` without ferry[serve]: uvicorn hidden, as if not installed."""
    script = ("import sys\nsys.modules['uvicorn'] = None\nfrom ferry.cli import main\n"
              f"sys.exit(main(['--repo', {str(repo.root)!r}, 'serve', '--http-port', '0']))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "error: ferry serve needs the optional dependencies of ferry[serve], which are not "
        "installed",
        "hint: install them with: pip install 'ferry[serve]'",
    ]


TOP3 = """kind = "pipeline"
description = "the three most likely digits"

[steps.model]
model = "digits"
inputs = "inputs.pixels"

[steps.top]
transform = "top_k"
k = 3
inputs = "model.probabilities"

[outputs]
digits = "top.indices"
scores = "top.scores"
"""


def test_a_pipeline_bundle_holds_the_versions_it_runs(repo, tmp_path, digits, capsys):
    from ferry.pipelines import create_pipeline

    x, _ = digits
    pipelines = Repository(tmp_path / "with-pipeline")
    shutil.copytree(repo.root / "digits", pipelines.root / "digits")
    (tmp_path / "top3.toml").write_text(TOP3)
    create_pipeline(pipelines, tmp_path / "top3.toml", "top3")
    out = tmp_path / "bundle"
    assert _export(pipelines, "top3", "-o", str(out), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["members"] == ["digits:1"] and report["files"] == ["manifest.json",
                                                                   "pipeline.toml"]
    assert json.loads((out / "bundle.json").read_text()) == {"model": "top3:1",
                                                             "members": ["digits:1"]}
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "digits", "top3"]
    with ferry.load(pipelines.root, "top3") as stored, ferry.load(out) as bundled:
        assert (bundled.name, bundled.version) == ("top3", 1)  # named by bundle.json
        expected, got = stored.predict({"pixels": x[:20]}), bundled.predict({"pixels": x[:20]})
    assert set(got) == {"digits", "scores"}
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
