"""PMML import (issue 5, item 5): a regression model, a tree ensemble and a neural network
fitted with scikit-learn on bundled data, written as PMML (tests/pmml_builders.py), imported
(API and CLI), served natively by pypmml behind the Runtime interface and compared with
scikit-learn's own predictions; bad documents refused in one line with nothing written.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import pmml_builders as pb
from extras import require
from ferry.formats import import_model
from ferry.repository import Repository
from tree_builders import cli, nothing_written, one_line_error, served

require("pypmml")

#: PMML4S computes in doubles, as scikit-learn does: they agree to rounding.
TOLERANCE = 1e-9


class Zoo:
    """Three scikit-learn models fitted once per module and written as PMML documents."""

    def __init__(self, root: Path) -> None:
        from sklearn.datasets import load_diabetes, load_iris
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LinearRegression
        from sklearn.neural_network import MLPClassifier

        diabetes, iris = load_diabetes(), load_iris()
        # float32-representable inputs: scikit-learn's trees compare float32 features.
        self.x_diabetes = diabetes.data.astype(np.float32).astype(np.float64)
        self.x_iris = iris.data.astype(np.float32).astype(np.float64)
        self.classes = [str(c) for c in iris.target_names]
        features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        self.linear = LinearRegression().fit(self.x_diabetes, diabetes.target)
        self.forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0,
                                             n_jobs=1).fit(self.x_iris, iris.target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: a few epochs on purpose
            self.mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=200,
                                     random_state=0).fit(self.x_iris, iris.target)
        self.paths = {
            "linear": pb.write(root / "linear.pmml",
                               pb.linear_regression(self.linear, diabetes.feature_names)),
            "forest": pb.write(root / "forest.pmml",
                               pb.random_forest(self.forest, features, self.classes)),
            "mlp": pb.write(root / "mlp.pmml",
                            pb.neural_network(self.mlp, features, self.classes)),
        }

    def expected(self, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Inputs and scikit-learn's own outputs, named as ferry serves them."""
        if name == "linear":
            return self.x_diabetes, {"predictions": self.linear.predict(self.x_diabetes)}
        model = self.forest if name == "forest" else self.mlp
        labels = np.asarray(self.classes)[model.predict(self.x_iris)]
        return self.x_iris, {"probabilities": model.predict_proba(self.x_iris),
                             "label": np.asarray([s.encode() for s in labels], dtype=object)}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("pmml-zoo"))


def _check_against_sklearn(repo: Repository, name: str, zoo: Zoo, model: str) -> None:
    x, want = zoo.expected(model)
    for rows in (1, 7, len(x)):  # any batch size
        got = served(repo, name, x[:rows])
        assert set(got) == set(want)
        for key, value in want.items():
            if key == "label":
                np.testing.assert_array_equal(got[key], value[:rows])
            else:
                assert got[key].shape == value[:rows].shape
                assert np.max(np.abs(got[key] - value[:rows])) <= TOLERANCE


CASES = [("linear", "RegressionModel", "regression"),
         ("forest", "MiningModel", "classification"),
         ("mlp", "NeuralNetwork", "classification")]


@pytest.mark.parametrize(("model", "element", "function"), CASES, ids=[c[0] for c in CASES])
def test_pmml_import_is_served_natively_like_sklearn(repo, zoo, model, element, function):
    manifest = import_model(repo, zoo.paths[model], model)
    assert (manifest.format, manifest.runtime, manifest.platform) == ("pmml", "pmml", "pmml")
    assert manifest.artifact == "model.pmml" and manifest.converter is None
    assert manifest.source.framework.startswith("pypmml")
    assert any("served natively by pypmml" in n and element in n for n in manifest.notes)
    assert any(n.startswith("input columns, in order: ") for n in manifest.notes)
    assert manifest.parity.passed
    if function == "classification":
        assert manifest.signature.output_names == ["probabilities", "label"]
        assert manifest.labels == zoo.classes
    else:
        assert manifest.signature.output_names == ["predictions"]
    _check_against_sklearn(repo, model, zoo, model)


def test_pmml_import_by_cli_and_show_says_native(capsys, tmp_path, zoo):
    root = tmp_path / "repo"
    code, out, err = cli(capsys, "--repo", root, "import", zoo.paths["mlp"], "--name", "iris_nn")
    assert code == 0, err
    assert "iris_nn:1" in out and "pmml -> pmml" in out
    _check_against_sklearn(Repository(root), "iris_nn", zoo, "mlp")
    code, out, _ = cli(capsys, "--repo", root, "show", "iris_nn")
    assert code == 0 and "served natively by pypmml" in out and "NeuralNetwork" in out


def test_formats_lists_trees_and_pmml(capsys):
    import json

    code, out, _ = cli(capsys, "formats", "--json")
    rows = {row["format"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["pmml"]["native_runtime"] == "pmml" and rows["pmml"]["extra"] == "pmml"
    assert rows["xgboost"]["converter"] == "onnxmltools.convert_xgboost"
    assert rows["lightgbm"]["converter"] == "onnxmltools.convert_lightgbm"
    assert all(rows[f]["installed"] for f in ("pmml", "xgboost", "lightgbm"))


def test_jvm_starts_once_per_process_and_not_at_import(zoo, tmp_path):
    """Importing the runtime starts nothing; two models share one JVM (one py4j gateway)."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import ferry.runtimes.pmml as rp\n"
        "assert 'pypmml' not in sys.modules and 'py4j' not in sys.modules\n"
        "first = rp.start_jvm()\n"
        "from pypmml.jvm import Py4jGateway\n"
        "gateway = Py4jGateway._gateway\n"
        f"rp.load_pmml(Path({str(zoo.paths['linear'])!r}))\n"
        f"rp.load_pmml(Path({str(zoo.paths['forest'])!r}))\n"
        "assert rp.start_jvm() is first and Py4jGateway._gateway is gateway\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.stdout.strip() == "ok", result.stderr


# ------------------------------------------------------------------ bad input


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BAD = [
    ("invalid-xml", lambda z, t: _write(t, "bad.pmml", z.paths["linear"].read_text()[:400]),
     "not well-formed XML"),
    ("unsupported-type", lambda z, t: _write(t, "ts.pmml", z.paths["linear"].read_text()
                                             .replace("RegressionModel", "TimeSeriesModel")),
     "PMML model type TimeSeriesModel is not supported"),
    ("entities", lambda z, t: _write(t, "xxe.pmml", z.paths["linear"].read_text().replace(
        "<PMML ", '<!DOCTYPE PMML [<!ENTITY x SYSTEM "file:///etc/passwd">]><PMML ', 1)),
     "refuses them"),
]


@pytest.mark.parametrize(("make", "phrase"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_pmml_one_line_exit_2_nothing_written(capsys, tmp_path, zoo, make, phrase):
    path = make(zoo, tmp_path)
    code, out, err = cli(capsys, "--repo", tmp_path / "repo", "import", path, "--name", "bad")
    assert code == 2 and out == "", err
    assert phrase in one_line_error(err)
    nothing_written(Repository(tmp_path / "repo"))


def test_pmml_named_as_xgboost_is_refused(capsys, tmp_path, zoo):
    path = _write(tmp_path, "model.json", zoo.paths["forest"].read_text())
    code, _, err = cli(capsys, "--repo", tmp_path / "repo", "import", path, "--name", "p",
                       "--format", "xgboost")
    line = one_line_error(err)
    assert code == 2 and "does not look like a xgboost model" in line and "pmml" in line
    nothing_written(Repository(tmp_path / "repo"))


def test_pmml_with_unscorable_input_is_an_input_error(repo, zoo):
    from ferry.errors import InputError

    import_model(repo, zoo.paths["linear"], "linear")
    with pytest.raises(InputError, match="no prediction for row 0"):
        served(repo, "linear", np.full((1, 10), np.nan))


def test_document_output_fields_are_followed(repo, zoo, tmp_path):
    """A document with its own <Output> (PMML4S then returns only those) serves the same,
    and each of its fields as an output of its own (issue 17)."""
    fields = ['<OutputField name="species" feature="predictedValue" dataType="string" '
              'optype="categorical"/>']
    fields += [f'<OutputField name="p{i}" feature="probability" value="{c}" dataType="double" '
               'optype="continuous"/>' for i, c in enumerate(zoo.classes)]
    text = zoo.paths["forest"].read_text().replace(
        '<Segmentation', "<Output>" + "".join(fields) + "</Output><Segmentation", 1)
    manifest = import_model(repo, _write(tmp_path, "own_output.pmml", text), "forest")
    assert manifest.source_names == {n: n for n in ("species", "p0", "p1", "p2")}
    x, want = zoo.expected("forest")
    got = served(repo, "forest", x)
    np.testing.assert_array_equal(got["label"], want["label"])
    np.testing.assert_array_equal(got["species"], want["label"])
    assert np.max(np.abs(got["probabilities"] - want["probabilities"])) <= TOLERANCE
    for i in range(len(zoo.classes)):
        assert np.max(np.abs(got[f"p{i}"] - want["probabilities"][:, i])) <= TOLERANCE


@pytest.mark.parametrize(("name", "text", "hidden", "extra"), [
    ("model.json", '{"learner": {}}', "xgboost", "xgboost"),
    ("model.txt", "tree\nversion=v4\n", "lightgbm", "lightgbm"),
    ("model.pmml", '<?xml version="1.0"?><PMML version="4.4"></PMML>', "pypmml", "pmml"),
], ids=["xgboost", "lightgbm", "pmml"])
def test_missing_extra_names_the_pip_line(capsys, tmp_path, monkeypatch, name, text, hidden,
                                          extra):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda mod, *a, **k: None
                        if mod.split(".")[0] == hidden else real(mod, *a, **k))
    path = _write(tmp_path, name, text)
    code, _, err = cli(capsys, "--repo", tmp_path / "repo", "import", path, "--name", "m")
    assert code == 2 and f"ferry[{extra}]" in one_line_error(err)
    assert f"pip install 'ferry[{extra}]'" in err
    nothing_written(Repository(tmp_path / "repo"))
