"""XGBoost import (issue 5, item 4): boosters and scikit-learn wrappers trained on bundled
data, saved with ``save_model`` as JSON and UBJSON, imported (API and CLI), served by ONNX
Runtime and compared with XGBoost's own predictions; bad files refused in one line.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from extras import require
from ferry.errors import ArtifactError, ConversionError, UnsupportedFormatError
from ferry.formats import ImportOptions, import_model
from ferry.repository import Repository
from tree_builders import Dataset, check_served, cli, dataset, nothing_written, one_line_error

xgb = require("xgboost")


class Zoo:
    """XGBoost models fitted once per module (a few trees each) and saved both ways."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = {n: dataset(n) for n in ("iris", "breast_cancer", "diabetes")}
        params = {"n_estimators": 8, "max_depth": 3, "random_state": 0, "n_jobs": 1}
        iris, cancer, diabetes = (self.data[n] for n in ("iris", "breast_cancer", "diabetes"))
        self.models = {
            "iris": xgb.XGBClassifier(**params).fit(iris.x, iris.y),
            "cancer": xgb.XGBClassifier(**params).fit(cancer.x, cancer.y),
            "diabetes": xgb.XGBRegressor(**params).fit(diabetes.x, diabetes.y),
        }
        # A plain Booster from xgb.train, as the native API users save it.
        self.models["booster"] = xgb.train(
            {"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
            xgb.DMatrix(cancer.x, label=cancer.y), num_boost_round=6,
        )
        for name, model in self.models.items():
            for ext in ("json", "ubj"):
                model.save_model(root / f"{name}.{ext}")

    def path(self, name: str, ext: str) -> Path:
        return self.root / f"{name}.{ext}"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("xgb-zoo"))


def _check(repo: Repository, name: str, model, data: Dataset) -> None:
    if isinstance(model, xgb.Booster):  # binary:logistic: P(class 1)
        p = model.predict(xgb.DMatrix(data.x))
        check_served(repo, name, data, labels=(p > 0.5).astype(np.int64),
                     proba=np.stack([1 - p, p], axis=1))
    elif data.kind == "classifier":
        check_served(repo, name, data, labels=model.predict(data.x),
                     proba=model.predict_proba(data.x))
    else:
        check_served(repo, name, data, values=model.predict(data.x))


CASES = [
    ("iris", "iris", 3),
    ("cancer", "breast_cancer", 2),
    ("booster", "breast_cancer", 2),
    ("diabetes", "diabetes", 0),
]


@pytest.mark.parametrize("ext", ["json", "ubj"])
@pytest.mark.parametrize(("model", "data", "classes"), CASES,
                         ids=[c[0] for c in CASES])
def test_xgboost_import_serves_like_xgboost(repo, zoo, model, data, classes, ext):
    manifest = import_model(repo, zoo.path(model, ext), model)
    assert manifest.format == "xgboost" and manifest.runtime == "onnxruntime"
    assert manifest.converter.startswith("onnxmltools") and "convert_xgboost" in manifest.converter
    assert manifest.source.framework.startswith("xgboost")
    assert manifest.parity.passed and manifest.parity.samples == 64
    assert "split thresholds" in manifest.parity.inputs
    outputs = {s.name: s for s in manifest.signature.outputs}
    assert manifest.signature.inputs[0].shape == (-1, zoo.data[data].x.shape[1])
    if classes:
        assert manifest.signature.output_names == ["probabilities", "label"]
        assert outputs["probabilities"].shape == (-1, classes)
        assert outputs["label"].datatype == "INT64"
        assert set(manifest.parity.mismatches) == {"label"}
    else:
        assert manifest.signature.output_names == ["predictions"]
        assert manifest.parity.rtol > 0
    _check(repo, model, zoo.models[model], zoo.data[data])


def test_xgboost_import_by_cli(capsys, tmp_path, zoo):
    code, out, err = cli(capsys, "--repo", tmp_path / "repo", "import", zoo.path("iris", "ubj"),
                         "--name", "iris_xgb")
    assert code == 0, err
    assert "iris_xgb:1" in out and "xgboost -> onnxruntime" in out
    repo = Repository(tmp_path / "repo")
    _check(repo, "iris_xgb", zoo.models["iris"], zoo.data["iris"])
    code, out, _ = cli(capsys, "--repo", tmp_path / "repo", "show", "iris_xgb")
    assert code == 0 and "onnxmltools" in out and "3-class classifier" in out


def test_xgboost_multi_softmax_serves_labels_only(repo, zoo, tmp_path):
    iris = zoo.data["iris"]
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2, objective="multi:softmax",
                              n_jobs=1).fit(iris.x, iris.y)
    model.save_model(tmp_path / "softmax.json")
    manifest = import_model(repo, tmp_path / "softmax.json", "softmax")
    assert manifest.signature.output_names == ["label"]
    assert any("classes only" in note for note in manifest.notes)
    check_served(repo, "softmax", iris, labels=model.predict(iris.x))


def test_user_samples_replace_threshold_rows(repo, zoo):
    x = zoo.data["diabetes"].x[:10]
    manifest = import_model(repo, zoo.path("diabetes", "json"), "d",
                            options=ImportOptions(samples=x))
    assert manifest.parity.samples == 10 and manifest.parity.inputs == "given"


# ------------------------------------------------------------------ bad input


def _truncated(zoo: Zoo, tmp_path: Path, ext: str) -> Path:
    data = zoo.path("iris", ext).read_bytes()
    path = tmp_path / f"truncated.{ext}"
    path.write_bytes(data[: len(data) // 2])
    return path


def _flipped(zoo: Zoo, tmp_path: Path) -> Path:
    text = zoo.path("iris", "json").read_text()
    path = tmp_path / "broken.json"
    path.write_text(text.replace('"trees":[', '"trees":[}', 1))
    return path


def _pickle(zoo: Zoo, tmp_path: Path) -> Path:
    path = tmp_path / "model.json"  # a pickle named as a booster file
    path.write_bytes(pickle.dumps(zoo.models["iris"]))
    return path


def _lightgbm_text(zoo: Zoo, tmp_path: Path) -> Path:
    path = tmp_path / "model.ubj"  # another booster format under XGBoost's name
    path.write_text("tree\nversion=v4\nnum_class=1\n")
    return path


BAD = [
    ("truncated-json", lambda z, t: _truncated(z, t, "json"), "XGBoost cannot load it"),
    ("truncated-ubj", lambda z, t: _truncated(z, t, "ubj"), "XGBoost cannot load it"),
    ("corrupt-json", _flipped, "XGBoost cannot load it"),
    ("pickle", _pickle, "is a pickle of an XGBoost model"),
]


@pytest.mark.parametrize(("make", "phrase"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_booster_files_one_line_exit_2_nothing_written(capsys, tmp_path, zoo, make, phrase):
    path = make(zoo, tmp_path)
    code, out, err = cli(capsys, "--repo", tmp_path / "repo", "import", path, "--name", "bad")
    assert code == 2 and out == ""
    assert phrase in one_line_error(err)
    nothing_written(Repository(tmp_path / "repo"))


def test_pickle_with_format_xgboost_is_refused(capsys, tmp_path, zoo):
    path = _pickle(zoo, tmp_path)
    code, _, err = cli(capsys, "--repo", tmp_path / "repo", "import", path, "--name", "p",
                       "--format", "xgboost")
    assert code == 2 and "does not look like a xgboost model" in one_line_error(err)
    nothing_written(Repository(tmp_path / "repo"))


def test_lightgbm_file_named_as_xgboost_is_refused(capsys, tmp_path, zoo):
    path = _lightgbm_text(zoo, tmp_path)
    code, _, err = cli(capsys, "--repo", tmp_path / "repo", "import", path, "--name", "p",
                       "--format", "xgboost")
    line = one_line_error(err)
    assert code == 2 and "does not look like a xgboost model" in line and "lightgbm" in line
    nothing_written(Repository(tmp_path / "repo"))


def test_xgboost_json_named_onnx_is_read_by_its_bytes(repo, zoo, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(zoo.path("cancer", "ubj").read_bytes())
    assert import_model(repo, path, "named_wrong").format == "xgboost"
    with pytest.raises(UnsupportedFormatError, match="does not look like a onnx model"):
        import_model(repo, path, "forced", format="onnx")


def test_unsupported_objective_is_refused_by_name(repo, zoo, tmp_path):
    cancer = zoo.data["breast_cancer"]
    ranker = xgb.train({"objective": "rank:pairwise", "max_depth": 2, "nthread": 1},
                       xgb.DMatrix(cancer.x, label=cancer.y), num_boost_round=2)
    ranker.save_model(tmp_path / "ranker.json")
    with pytest.raises(ConversionError, match="objective 'rank:pairwise' is not supported"):
        import_model(repo, tmp_path / "ranker.json", "ranker")
    nothing_written(repo)


def test_empty_learner_document_is_an_artifact_error(repo, tmp_path):
    path = tmp_path / "empty.json"
    path.write_text('{"learner": {}}')
    with pytest.raises(ArtifactError):
        import_model(repo, path, "empty")
    nothing_written(repo)


def test_pickled_xgboost_is_refused_even_with_its_trusted_hash(capsys, tmp_path, zoo):
    path = _pickle(zoo, tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    code, out, err = cli(capsys, "--repo", tmp_path / "repo", "import", path, "--name", "p",
                         "--trust-sha256", digest)
    assert code == 2 and out == ""
    assert "is a pickle of an XGBoost model" in err and 'save_model("model.json")' in err
    nothing_written(Repository(tmp_path / "repo"))
