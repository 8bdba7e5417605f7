"""TensorFlow SavedModel import (issue 5, item 1): Keras models trained on bundled data,
exported with ``model.export`` (and ``tf.saved_model.save``), imported, served and compared
with the framework's own predictions within the recorded tolerance.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ferry.cli import main
from ferry.errors import ArtifactError, UntrustedArtifactError
from ferry.formats import ImportOptions, import_model
from ferry.formats.keras import import_keras
from ferry.repository import Repository
from ferry.runtimes import load_runtime


def _keras_model(keras, features: int, outputs: int, *, erfinv: bool = False):
    layers = [keras.Input((features,), name="features")]
    if erfinv:  # tf2onnx has no conversion for Erfinv: the export is served natively
        layers.append(keras.layers.Lambda(lambda t: keras.ops.erfinv(keras.ops.tanh(t) * 0.9)))
    layers += [keras.layers.Dense(16, activation="relu"),
               keras.layers.Dense(outputs, activation="softmax" if outputs > 1 else None)]
    return keras.Sequential(layers)


class Data:
    """Standardised float32 features and targets of a bundled dataset, split 80/20."""

    def __init__(self, name: str) -> None:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        x = bunch.data.astype(np.float32)
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        y = bunch.target
        if name == "diabetes":
            y = ((y - y.mean()) / y.std()).astype(np.float32).reshape(-1, 1)
        order = np.random.default_rng(0).permutation(len(x))
        cut = int(len(x) * 0.8)
        self.x_train, self.x_test = x[order[:cut]], x[order[cut:]]
        self.y_train, self.y_test = y[order[:cut]], y[order[cut:]]


def _load(name: str) -> Data:
    return Data(name)


class Exports:
    """Keras models trained for a few epochs and exported as SavedModel directories."""

    def __init__(self, root: Path) -> None:
        keras = import_keras()
        keras.utils.set_random_seed(0)
        self.digits, self.iris, self.diabetes = (_load(n) for n in
                                                 ("digits", "iris", "diabetes"))
        self.models = {}
        self.dirs = {}
        for name, data, outputs, erfinv in (("digits", self.digits, 10, False),
                                            ("diabetes", self.diabetes, 1, False),
                                            ("erfinv", self.iris, 3, True)):
            model = _keras_model(keras, data.x_train.shape[1], outputs, erfinv=erfinv)
            loss = "mse" if outputs == 1 else "sparse_categorical_crossentropy"
            model.compile(keras.optimizers.Adam(0.01), loss)
            model.fit(data.x_train, data.y_train, epochs=5, batch_size=32, verbose=0)
            model.export(str(root / name), verbose=False)
            self.models[name] = model
            self.dirs[name] = root / name

    def predict(self, name: str, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.models[name].predict(x, verbose=0))


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    return Exports(tmp_path_factory.mktemp("savedmodels"))


def _nothing_written(repo: Repository) -> None:
    assert repo.models() == []
    staging = repo.root / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def _check_served(repo: Repository, name: str, exports: Exports, model: str, x: np.ndarray,
                  *, classifier: bool) -> None:
    stored = repo.open(name)
    manifest = stored.manifest
    signature = manifest.signature
    with load_runtime(manifest.runtime, stored.artifact_path, signature) as runtime:
        for rows in (1, 7, len(x)):
            got = runtime.predict({"features": x[:rows]})[signature.output_names[0]]
            want = exports.predict(model, x[:rows])
            assert got.shape == want.shape == (rows, want.shape[1])
            assert np.max(np.abs(got - want)) <= manifest.parity.tolerance
            if classifier:
                np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize(("model", "classifier"), [("digits", True), ("diabetes", False)],
                         ids=["digits-classifier", "diabetes-regressor"])
def test_keras_export_converted_with_tf2onnx_and_parity(repo, exports, model, classifier):
    manifest = import_model(repo, exports.dirs[model], model)
    assert (manifest.format, manifest.runtime, manifest.artifact) == (
        "savedmodel", "onnxruntime", "model.onnx")
    assert manifest.converter.startswith("tf2onnx ")
    assert manifest.source.framework.startswith("tensorflow 2.")
    signature = manifest.signature
    assert [(s.name, s.datatype, s.shape[0]) for s in signature.inputs] == [
        ("features", "FP32", -1)]
    assert signature.outputs[0].shape[0] == -1
    parity = manifest.parity
    assert parity.passed and "serving_default" in parity.method
    assert all(v <= parity.tolerance == 1e-4 for v in parity.max_abs_diff.values())
    data = getattr(exports, model)
    _check_served(repo, model, exports, model, data.x_test, classifier=classifier)
    if classifier:  # a model that learned something: the comparison is not of noise
        assert (exports.predict(model, data.x_test).argmax(1) == data.y_test).mean() > 0.7


def test_unconvertible_savedmodel_falls_back_to_tensorflow(repo, exports):
    manifest = import_model(repo, exports.dirs["erfinv"], "erf")
    assert (manifest.runtime, manifest.platform) == ("tensorflow", "tensorflow_savedmodel")
    assert manifest.artifact == "saved_model/saved_model.pb" and manifest.converter is None
    assert manifest.notes[0].startswith("served natively by tensorflow (tensorflow 2.")
    assert "tf2onnx has no ONNX conversion for the TensorFlow op(s) Erfinv" in manifest.notes[0]
    assert any(f.startswith("saved_model/variables/") for f in manifest.files)
    _check_served(repo, "erf", exports, "erfinv", exports.iris.x_test, classifier=True)


def test_native_flag_keeps_the_savedmodel(repo, exports):
    manifest = import_model(repo, exports.dirs["digits"], "d", options=ImportOptions(native=True))
    assert manifest.runtime == "tensorflow"
    assert "--native was given" in manifest.notes[0]
    _check_served(repo, "d", exports, "digits", exports.digits.x_test, classifier=True)


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_import_and_show(capsys, tmp_path, exports):
    repo = tmp_path / "repo"
    code, out, err = run(capsys, "--repo", repo, "import", exports.dirs["digits"], "--name", "d")
    assert code == 0, err
    assert "imported d:1 (savedmodel -> onnxruntime)" in out
    code, out, err = run(capsys, "--repo", repo, "import", exports.dirs["erfinv"], "--name", "e")
    assert code == 0, err
    assert "imported e:1 (savedmodel -> tensorflow)" in out
    code, out, _ = run(capsys, "--repo", repo, "show", "e")
    assert "savedmodel -> tensorflow (tensorflow_savedmodel)" in out
    assert "note      served natively by tensorflow" in out
    code, out, _ = run(capsys, "--repo", repo, "show", "d", "--json")
    assert json.loads(out)["converter"].startswith("tf2onnx")
    _check_served(Repository(repo), "d", exports, "digits", exports.digits.x_test,
                  classifier=True)
    _check_served(Repository(repo), "e", exports, "erfinv", exports.iris.x_test, classifier=True)


# --------------------------------------------------------------- bad input


def _copy(exports, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(exports.dirs["diabetes"], target)
    return target


def _missing_variables(exports, tmp_path):
    target = _copy(exports, tmp_path)
    for data in (target / "variables").glob("variables.data-*"):
        data.unlink()
    return [target]


def _truncated_pb(exports, tmp_path):
    target = _copy(exports, tmp_path)
    pb = target / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    return [target]


def _symlink(exports, tmp_path):
    target = _copy(exports, tmp_path)
    (tmp_path / "outside.txt").write_text("not part of the model")
    (target / "assets" / "vocab.txt").symlink_to(tmp_path / "outside.txt")
    return [target]


def _pb_file(exports, tmp_path):
    return [_copy(exports, tmp_path) / "saved_model.pb"]


def _as_torch(exports, tmp_path):
    return [exports.dirs["diabetes"], "--format", "torch"]


def _torch_as_savedmodel(exports, tmp_path):
    path = tmp_path / "model.pt2"
    path.write_text("not a torch program either")
    return [path, "--format", "savedmodel"]


BAD = [
    (_missing_variables, "is missing its variables"),
    (_truncated_pb, "saved_model.pb is not a readable SavedModel"),
    (_symlink, "copy: copy/assets/vocab.txt is a symbolic link"),
    (_pb_file, "saved_model.pb is one file of a SavedModel; import the directory"),
    (_as_torch, "diabetes does not look like a torch model; it looks like a savedmodel model"),
    (_torch_as_savedmodel, "model.pt2 does not look like a savedmodel model"),
]


@pytest.mark.parametrize(("make", "message"), BAD,
                         ids=["missing-variables", "truncated-pb", "symlink", "pb-file-not-directory",
                              "format-torch-on-savedmodel", "format-savedmodel-on-file"])
def test_bad_savedmodels_one_line_exit_2_nothing_written(capsys, tmp_path, exports, make,
                                                         message):
    repo = tmp_path / "repo"
    code, out, err = run(capsys, "--repo", repo, "import", *make(exports, tmp_path),
                         "--name", "x")
    assert code == 2, err
    report = err[err.index("error: "):].strip().splitlines()  # after the progress lines
    assert message in report[0]
    assert len(report) == 1 or (len(report) == 2 and report[1].startswith("hint: "))
    assert "Traceback" not in err and out == ""
    assert not repo.exists() or Repository(repo).models() == []


def _save_module(tmp_path: Path, name: str, fn_body, signatures: str = "serving_default"):
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return fn_body(tf, x)

    module = Module()
    tf.saved_model.save(module, str(tmp_path / name), signatures={signatures: module.serve})
    return tmp_path / name


def test_serving_function_that_reads_files_is_refused(repo, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("12345")

    def body(tf, x):
        length = tf.strings.length(tf.io.read_file(str(secret)))
        return {"y": x * tf.cast(length, tf.float32)}

    path = _save_module(tmp_path, "reader", body)
    with pytest.raises(UntrustedArtifactError, match="uses the op ReadFile"):
        import_model(repo, path, "r")
    _nothing_written(repo)


def test_savedmodel_without_serving_signature_is_refused(repo, tmp_path):
    path = _save_module(tmp_path, "other", lambda tf, x: {"y": x * 2.0}, signatures="predict")
    with pytest.raises(ArtifactError, match=r"has no 'serving_default' signature \(it has: "
                                            r"predict\)"):
        import_model(repo, path, "o")
    _nothing_written(repo)


def test_tf_saved_model_save_module_converts(repo, tmp_path):
    path = _save_module(tmp_path, "double", lambda tf, x: {"y": tf.nn.relu(x) * 2.0})
    manifest = import_model(repo, path, "double")
    assert manifest.runtime == "onnxruntime"
    assert manifest.signature.input_names == ["x"] and manifest.signature.output_names == ["y"]
    x = np.linspace(-2, 2, 28, dtype=np.float32).reshape(7, 4)
    stored = repo.open("double")
    with load_runtime("onnxruntime", stored.artifact_path, manifest.signature) as runtime:
        np.testing.assert_allclose(runtime.predict({"x": x})["y"], np.maximum(x, 0) * 2)


def test_serving_a_native_savedmodel_names_the_extra_simulated_missing_extra(
        capsys, tmp_path, exports, monkeypatch):
    repo = tmp_path / "repo"
    code, _, err = run(capsys, "--repo", repo, "import", exports.dirs["erfinv"], "--name", "e")
    assert code == 0, err
    np.save(tmp_path / "rows.npy", exports.iris.x_test[:2])
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import` now fails
    code, out, err = run(capsys, "--repo", repo, "predict", "e", "-i", tmp_path / "rows.npy")
    assert code == 2 and out == ""
    assert "running TensorFlow SavedModels needs the optional dependencies of " \
           "ferry[tensorflow]" in err
    assert "pip install 'ferry[tensorflow]'" in err and "Traceback" not in err


def test_two_inputs_two_outputs_keep_their_signature_keys(repo, tmp_path, exports):
    keras = import_keras()
    sepals, petals = keras.Input((2,), name="sepals"), keras.Input((2,), name="petals")
    body = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([sepals, petals]))
    model = keras.Model([sepals, petals], [keras.layers.Dense(3, activation="softmax")(body),
                                           keras.layers.Dense(1)(body)])
    model.compile(keras.optimizers.Adam(0.02), ["sparse_categorical_crossentropy", "mse"])
    x, y = exports.iris.x_train, exports.iris.y_train
    model.fit([x[:, :2], x[:, 2:]], [y, x[:, :1]], epochs=5, verbose=0)
    model.export(str(tmp_path / "two"), verbose=False)

    manifest = import_model(repo, tmp_path / "two", "two")
    assert manifest.runtime == "onnxruntime"
    assert manifest.signature.input_names == ["petals", "sepals"]  # sorted signature keys
    assert manifest.signature.output_names == ["output_0", "output_1"]
    stored = repo.open("two")
    test = exports.iris.x_test[:7]
    with load_runtime("onnxruntime", stored.artifact_path, manifest.signature) as runtime:
        got = runtime.predict({"sepals": test[:, :2], "petals": test[:, 2:]})
    want = model.predict([test[:, :2], test[:, 2:]], verbose=0)
    for name, expected in zip(["output_0", "output_1"], want, strict=True):
        assert np.max(np.abs(got[name] - expected)) <= manifest.parity.tolerance
    np.testing.assert_array_equal(got["output_0"].argmax(1), want[0].argmax(1))


def test_native_savedmodel_answers_over_rest(tmp_path, exports):
    # The real engine and REST server load the version with TensorFlow (its manifest says so).
    import httpx

    from rest_server import make_engine, serve

    repo = Repository(tmp_path / "repo")
    assert import_model(repo, exports.dirs["erfinv"], "erf").runtime == "tensorflow"
    rows = exports.iris.x_test[:7]
    want = exports.predict("erfinv", rows)
    body = {"inputs": [{"name": "features", "shape": [7, 4], "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}
    with serve(make_engine(repo), repo) as served, httpx.Client(base_url=served.url,
                                                               timeout=60) as http:
        response = http.post("/v2/models/erf/infer", json=body)
        assert response.status_code == 200, response.text
        out = response.json()["outputs"][0]
        got = np.asarray(out["data"], np.float32).reshape(out["shape"])
        assert np.max(np.abs(got - want)) <= 1e-4
        np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
