"""XGBoost and LightGBM served natively: ``--native``, or a conversion that misses the probe.

Models are trained here on scikit-learn's bundled data; the manifest must name the native
runtime and say why, and the booster loaded back from the repository (and through a real
``ferry serve``) must answer like the framework's own predict.
"""

from __future__ import annotations

import httpx
import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from ferry.formats import ImportOptions, import_model
from ferry.repository import Repository
from serving import ferry_serve
from tree_builders import check_served, cli, dataset


@pytest.mark.parametrize("ext", ["json", "ubj"])
def test_xgboost_classifier_with_native_flag(repo, tmp_path, ext):
    data = dataset("iris")
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(data.x, data.y)
    model.save_model(tmp_path / f"iris.{ext}")
    manifest = import_model(repo, tmp_path / f"iris.{ext}", "iris",
                            options=ImportOptions(native=True))
    assert manifest.runtime == "xgboost" and manifest.converter is None
    assert manifest.artifact == f"model.{ext}"
    assert "served natively by xgboost" in " ".join(manifest.notes)
    assert manifest.signature.output_names == ["probabilities", "label"]
    check_served(repo, "iris", data, labels=model.predict(data.x),
                 proba=model.predict_proba(data.x))


def test_xgboost_softmax_classes_only_natively(repo, tmp_path):
    data = dataset("iris")
    booster = xgb.train({"objective": "multi:softmax", "num_class": 3, "max_depth": 2},
                        xgb.DMatrix(data.x, label=data.y), num_boost_round=5)
    booster.save_model(tmp_path / "soft.json")
    manifest = import_model(repo, tmp_path / "soft.json", "soft",
                            options=ImportOptions(native=True))
    assert manifest.signature.output_names == ["label"]
    check_served(repo, "soft", data,
                 labels=booster.predict(xgb.DMatrix(data.x)).astype(np.int64))


def test_lightgbm_classifier_falls_back_when_the_probe_misses(repo, tmp_path):
    data = dataset("breast_cancer")
    model = lgb.LGBMClassifier(n_estimators=30, verbose=-1).fit(data.x, data.y)
    model.booster_.save_model(tmp_path / "cancer.txt")
    # ONNX sums leaves in float32 and LightGBM in float64: 1e-9 only the booster can meet.
    manifest = import_model(repo, tmp_path / "cancer.txt", "cancer",
                            options=ImportOptions(tolerance=1e-9))
    assert manifest.runtime == "lightgbm" and manifest.artifact == "model.txt"
    assert any("conversion missed parity" in note for note in manifest.notes), manifest.notes
    assert manifest.parity.passed
    p1 = model.booster_.predict(data.x.astype(np.float64)).astype(np.float32)
    check_served(repo, "cancer", data, labels=model.predict(data.x),
                 proba=np.stack([1 - p1, p1], axis=1))  # exactly: tolerance is 1e-9


def test_lightgbm_regressor_natively(repo, tmp_path):
    data = dataset("diabetes")
    model = lgb.LGBMRegressor(n_estimators=30, verbose=-1).fit(data.x, data.y)
    model.booster_.save_model(tmp_path / "diabetes.txt")
    manifest = import_model(repo, tmp_path / "diabetes.txt", "diabetes",
                            options=ImportOptions(native=True))
    assert manifest.runtime == "lightgbm"
    check_served(repo, "diabetes", data, values=model.predict(data.x))


def test_native_boosters_answer_over_a_real_server(tmp_path):
    repo = Repository(tmp_path / "repo")
    cancer = dataset("breast_cancer")
    classifier = lgb.LGBMClassifier(n_estimators=15, verbose=-1).fit(cancer.x, cancer.y)
    classifier.booster_.save_model(tmp_path / "cancer.txt")
    code, out, _ = cli_import(tmp_path, "cancer.txt", "cancer")
    assert code == 0 and "(lightgbm -> lightgbm)" in out
    rows = cancer.x[:5]
    with ferry_serve(repo.root) as server:
        reply = httpx.post(f"{server.url}/predict/cancer", json={"data": rows.tolist()},
                           timeout=30)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        np.testing.assert_allclose(np.asarray(body["predictions"]),
                                   classifier.predict_proba(rows), atol=1e-6)
        wrong = httpx.post(f"{server.url}/predict/cancer", json={"data": [[1.0, 2.0]]},
                           timeout=30)
        assert wrong.status_code == 400


def cli_import(tmp_path, file: str, name: str) -> tuple[int, str, str]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ferry", "--repo", str(tmp_path / "repo"),
                           "import", str(tmp_path / file), "--name", name, "--native"],
                          capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, done.stdout, done.stderr


def test_formats_lists_the_native_runtimes(capsys):
    code, out, _ = cli(capsys, "formats", "--json")
    assert code == 0
    import json

    rows = {row["format"]: row for row in json.loads(out)}
    assert rows["xgboost"]["native_runtime"] == "xgboost"
    assert rows["lightgbm"]["native_runtime"] == "lightgbm"
    assert rows["sklearn"]["native_runtime"] == "sklearn"
