"""scikit-learn: skops files (and hash-trusted pickles) converted with skl2onnx (issue 5, item 3).

Each model is trained here on data scikit-learn ships, imported, loaded back from the
repository with its runtime, and compared with the estimator's own predict/predict_proba.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

# The imports below need the sklearn extra, which require() checks first (tests/extras.py).
# ruff: noqa: E402
from extras import require

require("sklearn")
require("skl2onnx")
require("skops")

import joblib
import pandas as pd
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from ferry.cli import main
from ferry.errors import UntrustedArtifactError
from ferry.formats import ImportOptions, detect_format, import_model
from ferry.runtimes import load_runtime

NUMERIC = ["sepal length (cm)", "sepal width (cm)", "petal width (cm)"]


class Doubler(BaseEstimator, TransformerMixin):
    """A custom class: skops must not rebuild it without the user's say-so."""

    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return np.asarray(x) * 2


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def iris_pipeline(iris):
    x, y = iris
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y)


@pytest.fixture(scope="module")
def saved_pipeline(iris_pipeline, tmp_path_factory):
    path = tmp_path_factory.mktemp("skl") / "iris.skops"
    sio.dump(iris_pipeline, path)
    return path


@pytest.fixture(scope="module")
def iris_frame():
    """Iris as a DataFrame with petal length binned into strings, and species names."""
    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns=["target"])
    frame["size"] = pd.cut(frame.pop("petal length (cm)"), 3,
                           labels=["short", "medium", "long"]).astype(str)
    target = np.asarray(data.target_names)[data.target]
    return frame, target


@pytest.fixture(scope="module")
def mixed_model(iris_frame):
    frame, target = iris_frame
    columns = ColumnTransformer([
        ("num", StandardScaler(), NUMERIC),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["size"]),
    ])
    return Pipeline([("columns", columns), ("clf", LogisticRegression(max_iter=300))]).fit(
        frame, target)


def _check_classifier(repo, manifest, model, x, feed):
    runtime = load_runtime(manifest.runtime, repo.root / manifest.name / str(manifest.version)
                           / manifest.artifact, manifest.signature)
    with runtime:
        got = runtime.predict(feed)
    labels = got["label"]
    if labels.dtype == object:
        labels = np.array([v.decode() for v in labels])
    np.testing.assert_array_equal(labels, model.predict(x))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(x), atol=1e-4)


def test_pipeline_classifier_from_skops(repo, saved_pipeline, iris_pipeline, iris):
    manifest = import_model(repo, saved_pipeline, "iris")
    assert manifest.format == "sklearn" and manifest.runtime == "onnxruntime"
    sig = manifest.signature
    assert [(s.name, s.datatype, s.shape) for s in sig.inputs] == [("input", "FP32", (-1, 4))]
    assert sig.output_names == ["probabilities", "label"]
    assert manifest.labels == ["0", "1", "2"]
    assert manifest.parity.passed and manifest.parity.mismatches == {"label": 0}
    assert manifest.converter.startswith("skl2onnx")
    x = iris[0].astype(np.float32)
    _check_classifier(repo, manifest, iris_pipeline, x, {"input": x})


@pytest.mark.parametrize("estimator", [
    Ridge(alpha=0.5),
    GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0),
], ids=["ridge", "gradient-boosting"])
def test_regressor_from_skops(repo, tmp_path, estimator):
    x, y = load_diabetes(return_X_y=True)
    model = estimator.fit(x, y)
    path = tmp_path / "diabetes.skops"
    sio.dump(model, path)
    manifest = import_model(repo, path, "diabetes")
    assert manifest.signature.output_names == ["predictions"]
    assert manifest.labels is None
    assert manifest.parity.tolerance == 1e-4 and manifest.parity.rtol == 1e-4
    x32 = x.astype(np.float32)
    runtime = load_runtime(manifest.runtime, repo.root / "diabetes" / "1" / manifest.artifact,
                           manifest.signature)
    with runtime:
        got = runtime.predict({"input": x32})["predictions"]
    want = model.predict(x32)
    assert got.shape == (len(x), 1)
    np.testing.assert_allclose(got[:, 0], want, atol=1e-4, rtol=1e-4)


def test_column_transformer_one_input_per_column(repo, tmp_path, mixed_model, iris_frame):
    frame, _ = iris_frame
    path = tmp_path / "mixed.skops"
    sio.dump(mixed_model, path)
    manifest = import_model(repo, path, "mixed")
    inputs = {s.name: (s.datatype, s.shape) for s in manifest.signature.inputs}
    assert inputs == {
        "sepal_length__cm_": ("FP32", (-1, 1)),
        "sepal_width__cm_": ("FP32", (-1, 1)),
        "petal_width__cm_": ("FP32", (-1, 1)),
        "size": ("BYTES", (-1, 1)),
    }
    assert manifest.labels == ["setosa", "versicolor", "virginica"]
    assert "categories" in manifest.parity.inputs
    feed = {
        "sepal_length__cm_": frame[[NUMERIC[0]]].to_numpy(np.float32),
        "sepal_width__cm_": frame[[NUMERIC[1]]].to_numpy(np.float32),
        "petal_width__cm_": frame[[NUMERIC[2]]].to_numpy(np.float32),
        "size": np.array([[s.encode()] for s in frame["size"]], dtype=object),
    }
    as32 = frame.astype({c: np.float32 for c in NUMERIC})
    _check_classifier(repo, manifest, mixed_model, as32, feed)


def test_pickle_trusted_by_hash_cli(capsys, tmp_path, iris_pipeline, iris):
    path = tmp_path / "iris.joblib"
    joblib.dump(iris_pipeline, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    repo_dir = tmp_path / "repo"
    code = main(["--repo", str(repo_dir), "import", str(path), "--name", "iris",
                 "--trust-sha256", digest.upper()])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "imported iris:1 (sklearn -> onnxruntime)" in out

    from ferry.repository import Repository

    repo = Repository(repo_dir)
    manifest = repo.manifest("iris:1")
    assert manifest.source.sha256 == digest
    x = iris[0].astype(np.float32)
    _check_classifier(repo, manifest, iris_pipeline, x, {"input": x})


def test_skops_via_cli(capsys, tmp_path, saved_pipeline):
    code = main(["--repo", str(tmp_path / "repo"), "import", str(saved_pipeline),
                 "--name", "iris"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "imported iris:1 (sklearn -> onnxruntime)" in out


def test_sniff(saved_pipeline, tmp_path, iris_pipeline):
    assert detect_format(saved_pipeline).format == "sklearn"
    for protocol in (2, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(iris_pipeline, protocol=protocol))
        assert detect_format(path).format == "sklearn"


def _bad_files(tmp_path: Path, iris_pipeline, iris) -> dict[str, Path]:
    files = {}
    files["pickle"] = tmp_path / "model.pkl"
    joblib.dump(iris_pipeline, files["pickle"])
    x, y = iris
    custom = make_pipeline(Doubler(), LogisticRegression(max_iter=300)).fit(x, y)
    files["untrusted"] = tmp_path / "custom.skops"
    sio.dump(custom, files["untrusted"])
    files["text"] = tmp_path / "notes.skops"
    files["text"].write_text("this is not a model\n")
    files["corrupt"] = tmp_path / "corrupt.skops"
    data = (tmp_path / "good.skops")
    sio.dump(iris_pipeline, data)
    files["corrupt"].write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    files["bad-schema"] = tmp_path / "schema.skops"
    with zipfile.ZipFile(files["bad-schema"], "w") as archive:
        archive.writestr("schema.json", "{not json")
    return files


@pytest.mark.parametrize(("case", "extra", "phrases"), [
    ("pickle", [], ["is a pickle", "runs any code", "--trust-sha256", "skops.io.dump"]),
    ("pickle", ["--trust-sha256", "0" * 64], ["not the trusted " + "0" * 64]),
    ("pickle", ["--trust-sha256", "abc"], ["64 hexadecimal digits"]),
    ("untrusted", [], ["test_sklearn.Doubler", "does not trust"]),
    ("text", [], ["not a model file ferry recognises"]),
    ("corrupt", [], ["not a model file ferry recognises"]),
    ("bad-schema", [], ["not a readable skops file"]),
], ids=["pickle-untrusted", "pickle-wrong-hash", "pickle-bad-hex", "skops-custom-type",
        "text-named-skops", "truncated-skops", "skops-bad-schema"])
def test_bad_input_one_line_exit_2(capsys, tmp_path, iris_pipeline, iris, case, extra,
                                   phrases):
    files = _bad_files(tmp_path, iris_pipeline, iris)
    repo_dir = tmp_path / "repo"
    code = main(["--repo", str(repo_dir), "import", str(files[case]), "--name", "m", *extra])
    _, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(error_lines) == 1, err
    for phrase in phrases:
        assert phrase in err, err
    if case == "pickle" and not extra:
        digest = hashlib.sha256(files["pickle"].read_bytes()).hexdigest()
        assert digest in err
    if extra[1:] == ["0" * 64]:  # a wrong hash: both hashes are named
        digest = hashlib.sha256(files["pickle"].read_bytes()).hexdigest()
        assert digest in err
    assert not (repo_dir / "m").exists()
    assert [f for f in repo_dir.rglob("*") if f.is_file()] == []  # no staging left either


def test_untrusted_type_refused_in_api(repo, tmp_path, iris_pipeline, iris):
    files = _bad_files(tmp_path, iris_pipeline, iris)
    with pytest.raises(UntrustedArtifactError, match="Doubler"):
        import_model(repo, files["untrusted"], "custom")
    assert repo.versions("custom") == []


def test_given_samples_replace_drawn_ones(repo, tmp_path, iris_frame):
    """Samples the user gives (real rows) are used instead of the encoder's categories."""
    frame, target = iris_frame
    columns = ColumnTransformer([
        ("num", StandardScaler(), NUMERIC),
        ("cat", OneHotEncoder(), ["size"]),
    ])
    model = Pipeline([("columns", columns), ("clf", LogisticRegression(max_iter=300))]).fit(
        frame, target)
    path = tmp_path / "m.skops"
    sio.dump(model, path)
    rows = frame.iloc[::10]
    samples = {
        "sepal_length__cm_": rows[[NUMERIC[0]]].to_numpy(np.float32),
        "sepal_width__cm_": rows[[NUMERIC[1]]].to_numpy(np.float32),
        "petal_width__cm_": rows[[NUMERIC[2]]].to_numpy(np.float32),
        "size": np.array([[s.encode()] for s in rows["size"]], dtype=object),
    }
    manifest = import_model(repo, path, "given", options=ImportOptions(samples=samples))
    assert manifest.parity.samples == len(rows) and manifest.parity.inputs == "given"


def test_dataframe_numeric_model_takes_one_tensor(repo, tmp_path):
    """Fitted on an all-numeric DataFrame: one [-1, n] input; the reference gets a DataFrame."""
    data = load_breast_cancer(as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
        data.data, data.target)
    path = tmp_path / "cancer.skops"
    sio.dump(model, path)
    manifest = import_model(repo, path, "cancer")
    assert [(s.name, s.shape) for s in manifest.signature.inputs] == [("input", (-1, 30))]
    x = data.data.astype(np.float32)
    _check_classifier(repo, manifest, model, x, {"input": x.to_numpy()})


def test_classifier_without_predict_proba_exposes_label_only(repo, tmp_path, iris):
    x, y = iris
    model = LinearSVC().fit(x, y)
    path = tmp_path / "svc.skops"
    sio.dump(model, path)
    manifest = import_model(repo, path, "svc")
    assert manifest.signature.output_names == ["label"]
    assert any("no predict_proba" in note for note in manifest.notes)
    runtime = load_runtime(manifest.runtime, repo.root / "svc" / "1" / manifest.artifact,
                           manifest.signature)
    x32 = x.astype(np.float32)
    with runtime:
        np.testing.assert_array_equal(runtime.predict({"input": x32})["label"],
                                      model.predict(x32))


@pytest.mark.parametrize(("make", "phrase"), [
    (lambda x, y: StandardScaler().fit(x), "classifiers and regressors"),
    (lambda x, y: LogisticRegression(), "unfitted LogisticRegression"),
], ids=["transformer", "unfitted"])
def test_not_a_fitted_predictor(capsys, tmp_path, iris, make, phrase):
    path = tmp_path / "m.skops"
    sio.dump(make(*iris), path)
    code = main(["--repo", str(tmp_path / "repo"), "import", str(path), "--name", "m"])
    _, err = capsys.readouterr()
    assert code == 2 and phrase in err and "Traceback" not in err
    assert not (tmp_path / "repo" / "m").exists()


def test_column_samples_from_json_via_cli(capsys, tmp_path, mixed_model, iris_frame):
    """--samples with real rows, one [[value], ...] list per column input."""
    frame, _ = iris_frame
    path = tmp_path / "mixed.skops"
    sio.dump(mixed_model, path)
    rows = frame.iloc[::15]
    doc = {
        "sepal_length__cm_": [[v] for v in rows[NUMERIC[0]]],
        "sepal_width__cm_": [[v] for v in rows[NUMERIC[1]]],
        "petal_width__cm_": [[v] for v in rows[NUMERIC[2]]],
        "size": [[v] for v in rows["size"]],
    }
    samples = tmp_path / "rows.json"
    samples.write_text(json.dumps(doc))
    repo_dir = tmp_path / "repo"
    code = main(["--repo", str(repo_dir), "import", str(path), "--name", "mixed",
                 "--samples", str(samples)])
    _, err = capsys.readouterr()
    assert code == 0, err
    manifest = json.loads((repo_dir / "mixed" / "1" / "manifest.json").read_text())
    assert manifest["parity"]["samples"] == len(rows)
    assert manifest["parity"]["inputs"] == "given in rows.json"


def test_format_override_mismatch(capsys, tmp_path, saved_pipeline):
    """A skops file named as another format is refused, saying what it looks like."""
    code = main(["--repo", str(tmp_path / "repo"), "import", str(saved_pipeline), "--name", "m",
                 "--format", "onnx"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "does not look like a onnx model; it looks like a sklearn model" in err
