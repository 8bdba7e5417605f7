"""LightGBM import (issue 5, item 4): boosters and scikit-learn wrappers trained on bundled
data, saved with ``save_model`` as LightGBM text, imported (API and CLI), served by ONNX
Runtime and compared with LightGBM's own predictions; damaged files (which crash LightGBM's
own reader) refused in one line with nothing written.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from extras import require
from ferry.errors import ArtifactError, ConversionError
from ferry.formats import import_model
from ferry.repository import Repository
from tree_builders import Dataset, check_served, cli, dataset, nothing_written, one_line_error

lgb = require("lightgbm")


class Zoo:
    """LightGBM models fitted once per module (a few small trees each), saved as text."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = {n: dataset(n) for n in ("iris", "breast_cancer", "diabetes")}
        params = {"n_estimators": 8, "num_leaves": 7, "random_state": 0, "n_jobs": 1,
                  "verbose": -1}
        iris, cancer, diabetes = (self.data[n] for n in ("iris", "breast_cancer", "diabetes"))
        self.models = {
            "iris": lgb.LGBMClassifier(**params).fit(iris.x, iris.y),
            "cancer": lgb.LGBMClassifier(**params).fit(cancer.x, cancer.y),
            "diabetes": lgb.LGBMRegressor(**params).fit(diabetes.x, diabetes.y),
        }
        for name, model in self.models.items():
            model.booster_.save_model(root / f"{name}.txt")
        # A plain Booster from lgb.train, as the native API users save it.
        self.booster = lgb.train(
            {"objective": "multiclass", "num_class": 3, "num_leaves": 5, "verbose": -1,
             "num_threads": 1}, lgb.Dataset(iris.x, label=iris.y), num_boost_round=5,
        )
        self.booster.save_model(root / "booster.txt")

    def path(self, name: str) -> Path:
        return self.root / f"{name}.txt"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("lgb-zoo"))


def _check(repo: Repository, name: str, model, data: Dataset) -> None:
    if isinstance(model, lgb.Booster):
        proba = model.predict(data.x)
        check_served(repo, name, data, labels=proba.argmax(1), proba=proba)
    elif data.kind == "classifier":
        check_served(repo, name, data, labels=model.predict(data.x),
                     proba=model.predict_proba(data.x))
    else:
        check_served(repo, name, data, values=model.predict(data.x))


CASES = [("iris", "iris", 3), ("cancer", "breast_cancer", 2), ("booster", "iris", 3),
         ("diabetes", "diabetes", 0)]


@pytest.mark.parametrize(("model", "data", "classes"), CASES, ids=[c[0] for c in CASES])
def test_lightgbm_import_serves_like_lightgbm(repo, zoo, model, data, classes):
    manifest = import_model(repo, zoo.path(model), model)
    assert manifest.format == "lightgbm" and manifest.runtime == "onnxruntime"
    assert "convert_lightgbm" in manifest.converter
    assert manifest.source.framework.startswith("lightgbm")
    assert manifest.parity.passed and "split thresholds" in manifest.parity.inputs
    if classes:
        assert manifest.signature.output_names == ["probabilities", "label"]
        assert manifest.signature.outputs[0].shape == (-1, classes)
        assert manifest.parity.mismatches == {"label": 0}
    else:
        assert manifest.signature.output_names == ["predictions"]
    trained = zoo.booster if model == "booster" else zoo.models[model]
    _check(repo, model, trained, zoo.data[data])


def test_lightgbm_import_by_cli(capsys, tmp_path, zoo):
    code, out, err = cli(capsys, "--repo", tmp_path / "repo", "import", zoo.path("cancer"),
                         "--name", "cancer_lgb")
    assert code == 0, err
    assert "cancer_lgb:1" in out and "lightgbm -> onnxruntime" in out
    repo = Repository(tmp_path / "repo")
    _check(repo, "cancer_lgb", zoo.models["cancer"], zoo.data["breast_cancer"])
    code, out, _ = cli(capsys, "--repo", tmp_path / "repo", "show", "cancer_lgb")
    assert code == 0 and "binary classifier" in out


# ------------------------------------------------------------------ bad input


def _cut(zoo: Zoo, tmp_path: Path, where: float) -> Path:
    text = zoo.path("iris").read_text()
    path = tmp_path / "cut.txt"
    path.write_text(text[: int(len(text) * where)])
    return path


def _garbled_tree(zoo: Zoo, tmp_path: Path) -> Path:
    text = zoo.path("iris").read_text()
    path = tmp_path / "garbled.txt"
    path.write_text(text.replace("leaf_value=", "leaf_valeu=", 1))
    return path


def _pickle(zoo: Zoo, tmp_path: Path) -> Path:
    path = tmp_path / "model.txt"  # a pickled LGBMClassifier named as a booster file
    path.write_bytes(pickle.dumps(zoo.models["iris"]))
    return path


BAD = [
    # Cut inside the trees: LightGBM's own reader aborts the process on this file.
    ("cut-in-trees", lambda z, t: _cut(z, t, 0.3), "LightGBM cannot load it"),
    ("cut-in-header", lambda z, t: _cut(z, t, 0.01), "LightGBM cannot load it"),
    ("garbled-tree", _garbled_tree, "LightGBM cannot load it"),
    ("pickle", _pickle, "is a pickle of a LightGBM model"),
]


@pytest.mark.parametrize(("make", "phrase"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_booster_files_one_line_exit_2_nothing_written(capsys, tmp_path, zoo, make, phrase):
    path = make(zoo, tmp_path)
    code, out, err = cli(capsys, "--repo", tmp_path / "repo", "import", path, "--name", "bad")
    assert code == 2 and out == "", err
    assert phrase in one_line_error(err)
    nothing_written(Repository(tmp_path / "repo"))


def test_xgboost_file_named_as_lightgbm_is_refused(capsys, tmp_path):
    path = tmp_path / "model.txt"
    path.write_text('{"learner": {"attributes": {}}}')
    code, _, err = cli(capsys, "--repo", tmp_path / "repo", "import", path, "--name", "x",
                       "--format", "lightgbm")
    line = one_line_error(err)
    assert code == 2 and "does not look like a lightgbm model" in line and "xgboost" in line
    nothing_written(Repository(tmp_path / "repo"))


def test_ranking_objective_is_refused_by_name(repo, zoo, tmp_path):
    cancer = zoo.data["breast_cancer"]
    ranker = lgb.train({"objective": "lambdarank", "verbose": -1, "num_threads": 1},
                       lgb.Dataset(cancer.x, label=cancer.y, group=[len(cancer.y)]),
                       num_boost_round=2)
    ranker.save_model(tmp_path / "ranker.txt")
    with pytest.raises(ConversionError, match="objective 'lambdarank' is not supported"):
        import_model(repo, tmp_path / "ranker.txt", "ranker")
    nothing_written(repo)


def test_damaged_file_error_is_an_artifact_error(repo, zoo, tmp_path):
    with pytest.raises(ArtifactError, match="the file may be truncated|LightGBM cannot load"):
        import_model(repo, _cut(zoo, tmp_path, 0.5), "cut")
    assert np.isfinite(0)  # this process survived LightGBM's abort on the same file
    nothing_written(repo)
