"""Keras import: the seed network trained for real, .h5 and .keras, parity with Keras."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from ferry.errors import ArtifactError, InputError, UntrustedArtifactError
from ferry.formats import ImportOptions, import_model
from ferry.formats.keras import import_keras
from ferry.repository.hashing import hash_file
from ferry.runtimes import load_runtime


def _nothing_written(repo):
    assert repo.models() == []
    staging = repo.root / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []


@pytest.mark.parametrize("fixture", ["seed_h5", "seed_keras"], ids=["h5", "keras"])
def test_seed_network_imports_with_parity(request, repo, seed_data, fixture):
    source = request.getfixturevalue(fixture)
    manifest = import_model(repo, source, "digits")
    assert (manifest.name, manifest.version, manifest.format) == ("digits", 1, "keras")
    assert manifest.runtime == "onnxruntime" and manifest.artifact == "model.onnx"
    assert manifest.source.sha256 == hash_file(source)[0]
    assert manifest.source.filename == source.name
    assert manifest.converter and "tf2onnx" in manifest.converter
    sig = manifest.signature
    assert [(s.datatype, s.shape) for s in sig.inputs] == [("FP32", (-1, 64))]
    assert [(s.name, s.datatype, s.shape) for s in sig.outputs] == [("dense_2", "FP32", (-1, 10))]
    parity = manifest.parity
    assert parity is not None and parity.passed and parity.samples == 16
    assert parity.max_abs_diff["dense_2"] <= parity.tolerance == 1e-4

    # The stored artifact, loaded as the server will, answers like Keras on real test data.
    keras = import_keras()
    model = keras.models.load_model(source, compile=False)
    expected = model.predict(seed_data.x_test, verbose=0)
    stored = repo.open("digits")
    with load_runtime(manifest.runtime, stored.artifact_path, sig) as runtime:
        got = runtime.predict({sig.inputs[0].name: seed_data.x_test})["dense_2"]
    assert np.max(np.abs(got - expected)) <= parity.tolerance
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
    assert (got.argmax(1) == seed_data.y_test).mean() > 0.7


def test_given_samples_are_used_and_recorded(repo, seed_h5, seed_data, tmp_path):
    np.save(tmp_path / "samples.npy", seed_data.x_test[:50])
    manifest = import_model(repo, seed_h5, "digits",
                            options=ImportOptions(samples=tmp_path / "samples.npy"))
    assert manifest.parity.samples == 50
    assert manifest.parity.inputs == "given in samples.npy"


def test_samples_that_do_not_fit_are_refused(repo, seed_h5, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 63), np.float32))
    with pytest.raises(InputError, match=r"parity samples do not fit.*got shape \[3, 63\]"):
        import_model(repo, seed_h5, "digits", options=ImportOptions(samples=tmp_path / "bad.npy"))
    _nothing_written(repo)


def test_labels_must_match_the_classes(repo, seed_h5):
    with pytest.raises(InputError, match="3 labels given, but output 'dense_2' has 10 classes"):
        import_model(repo, seed_h5, "digits", options=ImportOptions(labels=["a", "b", "c"]))
    _nothing_written(repo)


def test_multi_input_multi_output_model(repo, tmp_path):
    keras = import_keras()
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b")
    x = keras.layers.Concatenate()([a, b])
    model = keras.Model([a, b], [keras.layers.Dense(2, name="score")(x),
                                 keras.layers.Dense(1, name="value")(x)])
    model.save(tmp_path / "multi.keras")
    manifest = import_model(repo, tmp_path / "multi.keras", "multi")
    assert manifest.signature.input_names == ["a", "b"]
    assert manifest.signature.output_names == ["score", "value"]
    assert set(manifest.parity.max_abs_diff) == {"score", "value"}


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_lambda_layers_are_refused_in_safe_mode(repo, tmp_path, suffix):
    keras = import_keras()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2),
                              keras.layers.Dense(2)])
    model.save(tmp_path / f"lam{suffix}")
    with pytest.raises(UntrustedArtifactError, match="contains a Lambda layer.*safe mode refuses"):
        import_model(repo, tmp_path / f"lam{suffix}", "lam")
    _nothing_written(repo)


def test_weights_only_h5_is_refused(repo, tmp_path, seed_h5):
    keras = import_keras()
    model = keras.models.load_model(seed_h5, compile=False)
    model.save_weights(tmp_path / "only.weights.h5")
    with pytest.raises(ArtifactError, match="holds weights only"):
        import_model(repo, tmp_path / "only.weights.h5", "w")
    _nothing_written(repo)


def test_truncated_h5_is_refused(repo, tmp_path, seed_h5):
    data = seed_h5.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="cut.h5"):
        import_model(repo, tmp_path / "cut.h5", "cut")
    _nothing_written(repo)


def test_corrupted_keras_archive_is_refused(repo, tmp_path, seed_keras):
    data = bytearray(seed_keras.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 200] = b"\xff" * 200
    (tmp_path / "bad.keras").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="bad.keras"):
        import_model(repo, tmp_path / "bad.keras", "bad")
    _nothing_written(repo)


def test_unknown_custom_layer_is_refused(repo, tmp_path):
    keras = import_keras()

    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    model = keras.Sequential([keras.Input((4,)), Doubler(), keras.layers.Dense(2)])
    model.save(tmp_path / "custom.keras")
    with pytest.raises(ArtifactError, match="custom.keras"):
        import_model(repo, tmp_path / "custom.keras", "custom")
    _nothing_written(repo)


def test_keras_config_is_scanned_before_keras_sees_the_file(repo, tmp_path):
    with zipfile.ZipFile(tmp_path / "fake.keras", "w") as archive:
        archive.writestr("config.json", '{"class_name": "Sequential", "config": {"layers": '
                         '[{"class_name": "Lambda", "config": {"name": "evil"}}]}}')
        archive.writestr("metadata.json", "{}")
    with pytest.raises(UntrustedArtifactError, match="Lambda layer \\('evil'\\)"):
        import_model(repo, tmp_path / "fake.keras", "fake")
    _nothing_written(repo)
