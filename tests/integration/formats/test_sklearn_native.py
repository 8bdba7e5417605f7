"""scikit-learn served natively: no converter, a missed parity probe, or ``--native`` (issue 5).

Each model is trained here on data scikit-learn ships; the manifest must say why it is
served by the ``sklearn`` runtime, and the runtime loaded back from the repository (and a
real ``ferry serve``) must answer exactly like the estimator.
"""

from __future__ import annotations

import hashlib

import httpx
import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_diabetes, load_iris
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestCentroid
from sklearn.semi_supervised import LabelSpreading

from ferry.cli import main
from ferry.errors import IntegrityError
from ferry.formats import ImportOptions, import_model
from ferry.repository import Repository
from ferry.runtimes import load_runtime
from serving import ROOT, ferry_serve
from sklearn_custom import NearestMeanClassifier


def _served(repo: Repository, name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    stored = repo.open(name)
    manifest = stored.manifest
    path = repo.root / name / str(manifest.version) / manifest.artifact
    with load_runtime(manifest.runtime, path, manifest.signature) as runtime:
        return runtime.predict({"input": x.astype(np.float32)})


def test_a_regressor_without_a_converter_is_served_by_scikit_learn(repo, tmp_path):
    x, y = load_diabetes(return_X_y=True)
    model = KernelRidge(alpha=0.5).fit(x, y)
    sio.dump(model, tmp_path / "kr.skops")
    manifest = import_model(repo, tmp_path / "kr.skops", "kr")
    assert manifest.runtime == "sklearn" and manifest.converter is None
    assert manifest.artifact == "model.skops"
    assert any("served natively by sklearn" in n and "conversion failed" in n
               and "KernelRidge" in n for n in manifest.notes), manifest.notes
    spec = manifest.signature.outputs[0]
    assert (spec.name, spec.datatype, spec.shape) == ("predictions", "FP32", (-1, 1))
    got = _served(repo, "kr", x)["predictions"]
    np.testing.assert_allclose(got[:, 0], model.predict(x.astype(np.float32)), rtol=1e-5,
                               atol=1e-3)


def test_a_classifier_without_a_converter_keeps_labels_and_probabilities(repo, tmp_path):
    x, y = load_iris(return_X_y=True)
    model = LabelSpreading().fit(x, y)
    sio.dump(model, tmp_path / "ls.skops")
    # Rows far from the data give LabelSpreading 0/0 probabilities: parity on real rows.
    samples = x[::10].astype(np.float32)
    manifest = import_model(repo, tmp_path / "ls.skops", "ls",
                            options=ImportOptions(samples=samples))
    assert manifest.runtime == "sklearn" and manifest.labels == ["0", "1", "2"]
    assert manifest.signature.output_names == ["probabilities", "label"]
    got = _served(repo, "ls", x)
    x32 = x.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(got["label"], model.predict(x32))
    assert got["label"].dtype == np.int64
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(x32), atol=1e-6)


def test_string_classes_come_back_as_bytes_labels(repo, tmp_path):
    data = load_iris()
    names = np.asarray(data.target_names)[data.target]
    model = NearestCentroid().fit(data.data, names)
    sio.dump(model, tmp_path / "nc.skops")
    manifest = import_model(repo, tmp_path / "nc.skops", "nc")
    assert manifest.runtime == "sklearn"
    assert [(o.name, o.datatype) for o in manifest.signature.outputs] == [
        ("probabilities", "FP32"), ("label", "BYTES")]
    assert manifest.labels == ["setosa", "versicolor", "virginica"]
    got = _served(repo, "nc", data.data)["label"]
    assert [v.decode() for v in got] == model.predict(data.data.astype(np.float32)).tolist()


def test_native_flag_keeps_a_convertible_model_on_scikit_learn(capsys, tmp_path):
    x, y = load_iris(return_X_y=True)
    sio.dump(LogisticRegression(max_iter=300).fit(x, y), tmp_path / "lr.skops")
    repo_dir = tmp_path / "repo"
    assert main(["--repo", str(repo_dir), "import", str(tmp_path / "lr.skops"), "--name", "lr",
                 "--native"]) == 0
    out, _ = capsys.readouterr()
    assert "imported lr:1 (sklearn -> sklearn)" in out
    assert main(["--repo", str(repo_dir), "show", "lr"]) == 0
    out, _ = capsys.readouterr()
    assert "served natively by sklearn: --native was given" in out


def test_native_flag_on_a_column_model_is_one_line_exit_2(capsys, tmp_path):
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": ["x", "y", "x", "y"]})
    model = Pipeline([("c", ColumnTransformer([("o", OneHotEncoder(), ["b"])],
                                              remainder="passthrough")),
                      ("m", LogisticRegression())]).fit(frame, [0, 1, 0, 1])
    sio.dump(model, tmp_path / "cols.skops")
    repo_dir = tmp_path / "repo"
    code = main(["--repo", str(repo_dir), "import", str(tmp_path / "cols.skops"),
                 "--name", "cols", "--native"])
    _, err = capsys.readouterr()
    assert code == 2 and "per-column inputs" in err
    assert not (repo_dir / "cols").exists()


def test_a_trusted_pickle_of_a_custom_estimator_is_served_by_a_real_server(tmp_path):
    x, y = load_iris(return_X_y=True)
    model = NearestMeanClassifier().fit(x, y)
    path = tmp_path / "custom.joblib"
    joblib.dump(model, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    repo = Repository(tmp_path / "repo")
    manifest = import_model(repo, path, "custom", options=ImportOptions(trust_sha256=digest))
    assert manifest.runtime == "sklearn" and manifest.artifact == "model.pkl"
    rows = x[::10].astype(np.float32)
    env = {"PYTHONPATH": str(ROOT / "tests")}  # the server must find the user's class
    with ferry_serve(repo.root, env=env) as server:
        reply = httpx.post(f"{server.url}/v2/models/custom/infer", json={"inputs": [
            {"name": "input", "datatype": "FP32", "shape": list(rows.shape),
             "data": rows.ravel().tolist()}]}, timeout=30)
        assert reply.status_code == 200, reply.text
        outputs = {o["name"]: o for o in reply.json()["outputs"]}
        assert outputs["label"]["data"] == model.predict(rows.astype(np.float64)).tolist()
        proba = np.asarray(outputs["probabilities"]["data"]).reshape(-1, 3)
        np.testing.assert_allclose(proba, model.predict_proba(rows.astype(np.float64)),
                                   atol=1e-6)
        bad = httpx.post(f"{server.url}/predict/custom", json={"data": [[1.0, 2.0]]},
                         timeout=30)
        assert bad.status_code == 400 and "input" in bad.json()["error"]


@pytest.mark.parametrize("what", ["skops", "pickle"])
def test_a_changed_stored_file_is_refused_at_load(repo, tmp_path, what):
    x, y = load_diabetes(return_X_y=True)
    model = KernelRidge().fit(x[:50], y[:50])
    path = tmp_path / ("m.skops" if what == "skops" else "m.pkl")
    if what == "skops":
        sio.dump(model, path)
        options = ImportOptions()
    else:
        joblib.dump(model, path)
        options = ImportOptions(trust_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    manifest = import_model(repo, path, "m", options=options)
    stored = repo.root / "m" / "1" / manifest.artifact
    stored.chmod(0o644)
    stored.write_bytes(stored.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match=r"does not match its recorded sha256.*modified after "
                       r"import"):
        repo.open("m")


def test_a_conversion_that_misses_parity_falls_back_to_scikit_learn(repo, tmp_path):
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(x, y)
    sio.dump(model, tmp_path / "lr.skops")
    # ONNX computes in float32: a tolerance of 1e-9 cannot be met by the conversion, and is
    # met by the estimator itself.
    manifest = import_model(repo, tmp_path / "lr.skops", "strict",
                            options=ImportOptions(tolerance=1e-9))
    assert manifest.runtime == "sklearn"
    assert any("conversion missed parity" in note for note in manifest.notes), manifest.notes
    assert manifest.parity.passed
    assert not (repo.root / "strict" / "1" / "model.onnx").exists()
