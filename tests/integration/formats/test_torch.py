"""PyTorch import (issue 5, item 2): real modules trained on bundled data, saved as users do.

Each model is imported with ``import_model`` and with ``ferry import``, loaded back from the
repository with the runtime its manifest names, and compared with the trained module itself
(classifier argmax identical, values within the recorded tolerance), at batch 1 and batch 7.
"""

from __future__ import annotations

import io
import json
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import torch_builders as tb
from ferry.cli import main
from ferry.errors import ArtifactError, UnsupportedFormatError, UntrustedArtifactError
from ferry.formats import ImportOptions, import_model
from ferry.repository import Repository
from ferry.runtimes import load_runtime


class Zoo:
    """The trained modules and the files they were saved to (one per test module)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.iris = tb.load("iris")
        self.digits = tb.load("digits")
        self.diabetes = tb.load("diabetes")
        self.iris_mlp = tb.train(tb.mlp(4, 16, 3), self.iris)
        self.digits_heads = tb.train(tb.TwoHeads(64, 10), self.digits, steps=80)
        self.diabetes_mlp = tb.train(tb.mlp(10, 16, 1), self.diabetes)
        self.erfinv = tb.train(tb.ErfinvNet(4, 3), self.iris, steps=80)
        example = self.iris.x_train[:5]
        self.files = {
            "iris.pt2": tb.save_pt2(self.iris_mlp, example, root / "iris.pt2"),
            "iris_traced.pt": tb.save_traced(self.iris_mlp, example, root / "iris_traced.pt"),
            "iris_scripted.pt": tb.save_scripted(self.iris_mlp, root / "iris_scripted.pt"),
            "digits.pt2": tb.save_pt2(self.digits_heads, self.digits.x_train[:5],
                                      root / "digits.pt2"),
            "diabetes.pt2": tb.save_pt2(self.diabetes_mlp, self.diabetes.x_train[:5],
                                        root / "diabetes.pt2"),
            "erfinv.pt2": tb.save_pt2(self.erfinv, example, root / "erfinv.pt2"),
            "erfinv.pt": tb.save_traced(self.erfinv, example, root / "erfinv.pt"),
            "fixed.pt2": tb.save_pt2(self.iris_mlp, example, root / "fixed.pt2", dynamic=False),
        }

    def path(self, name: str) -> Path:
        return self.files[name]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    """Every module trained once (a few seconds on two cores) and saved in each format."""
    return Zoo(tmp_path_factory.mktemp("torch-zoo"))


def _nothing_written(repo: Repository) -> None:
    assert repo.models() == []
    staging = repo.root / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def _served(repo: Repository, name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """Load the latest version as the server does (runtime from the manifest) and predict."""
    stored = repo.open(name)
    manifest = stored.manifest
    with load_runtime(manifest.runtime, stored.artifact_path, manifest.signature) as runtime:
        return runtime.predict({manifest.signature.inputs[0].name: x})


def _check_against_module(repo, name, module, x, *, classifier: bool) -> None:
    manifest = repo.open(name).manifest
    tolerance = manifest.parity.tolerance
    for rows in (1, 7, len(x)):  # the dynamic batch axis survives into the artifact
        got = _served(repo, name, x[:rows])
        first = got[manifest.signature.output_names[0]]
        want = tb.predict(module, x[:rows])
        assert first.shape == want.shape == (rows, want.shape[1])
        assert np.max(np.abs(first - want)) <= tolerance
        if classifier:
            np.testing.assert_array_equal(first.argmax(1), want.argmax(1))


CONVERTED = [
    ("iris.pt2", "iris_mlp", "iris", True, "dynamo=True"),
    ("iris_traced.pt", "iris_mlp", "iris", True, "TorchScript exporter"),
    ("digits.pt2", "digits_heads", "digits", True, "dynamo=True"),
    ("diabetes.pt2", "diabetes_mlp", "diabetes", False, "dynamo=True"),
]


# Long by nature: the first case builds the module's zoo (trains and exports every model with
# torch.export, ~45 s on two busy cores) before its own import.
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("file", "module", "data", "classifier", "converter"), CONVERTED,
                         ids=["pt2-iris-classifier", "torchscript-traced-iris",
                              "pt2-digits-two-outputs", "pt2-diabetes-regressor"])
def test_converted_to_onnx_with_parity(repo, zoo, file, module, data, classifier, converter):
    manifest = import_model(repo, zoo.path(file), "m")
    assert (manifest.format, manifest.runtime, manifest.artifact) == (
        "torch", "onnxruntime", "model.onnx")
    assert converter in manifest.converter and manifest.source.framework.startswith("torch 2.")
    signature = manifest.signature
    assert signature.inputs[0].shape[0] == -1 and signature.outputs[0].shape[0] == -1
    assert manifest.parity.passed and manifest.parity.method.startswith("onnxruntime vs torch")
    assert all(v <= manifest.parity.tolerance == 1e-4
               for v in manifest.parity.max_abs_diff.values())
    assert manifest.notes == []
    test = getattr(zoo, data)
    _check_against_module(repo, "m", getattr(zoo, module), test.x_test, classifier=classifier)
    if classifier:  # and the model really learned: the comparison is not of noise
        got = _served(repo, "m", test.x_test)[signature.output_names[0]]
        assert (got.argmax(1) == test.y_test).mean() > 0.7


def test_two_outputs_are_named_and_both_checked(repo, zoo):
    manifest = import_model(repo, zoo.path("digits.pt2"), "heads")
    assert manifest.signature.output_names == ["output_0", "output_1"]
    assert set(manifest.parity.max_abs_diff) == {"output_0", "output_1"}
    got = _served(repo, "heads", zoo.digits.x_test[:7])
    np.testing.assert_allclose(got["output_1"].sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("file", "runtime", "stored"),
                         [("erfinv.pt2", "torch", "model.pt2"),
                          ("erfinv.pt", "torchscript", "model.pt")], ids=["pt2", "torchscript"])
def test_unconvertible_module_falls_back_to_native_torch(repo, zoo, file, runtime, stored):
    # ONNX has no erfinv operator: the conversion fails and torch itself serves the model.
    manifest = import_model(repo, zoo.path(file), "erf")
    assert (manifest.runtime, manifest.artifact, manifest.converter) == (runtime, stored, None)
    assert len(manifest.notes) == 1
    assert manifest.notes[0].startswith(f"served natively by {runtime} (torch 2.")
    assert "the ONNX conversion failed" in manifest.notes[0]
    assert manifest.platform in ("pytorch_torch_export", "pytorch_libtorch")
    _check_against_module(repo, "erf", zoo.erfinv, zoo.iris.x_test, classifier=True)


def test_native_flag_keeps_the_torch_file(repo, zoo):
    manifest = import_model(repo, zoo.path("iris.pt2"), "iris",
                            options=ImportOptions(native=True))
    assert (manifest.runtime, manifest.artifact) == ("torch", "model.pt2")
    assert manifest.notes == ["served natively by torch (torch 2.13.0+cpu): --native was given"]
    assert manifest.parity.passed
    _check_against_module(repo, "iris", zoo.iris_mlp, zoo.iris.x_test, classifier=True)


def test_fixed_batch_program_is_served_at_its_shape_and_says_so(repo, zoo):
    manifest = import_model(repo, zoo.path("fixed.pt2"), "fixed")
    assert manifest.signature.inputs[0].shape == (5, 4)
    assert "exported without a dynamic batch dimension" in manifest.notes[0]
    got = _served(repo, "fixed", zoo.iris.x_test[:5])["output"]
    np.testing.assert_allclose(got, tb.predict(zoo.iris_mlp, zoo.iris.x_test[:5]), atol=1e-4)


# --------------------------------------------------------------- the CLI


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_import_show_and_predict_pt2(capsys, tmp_path, zoo):
    repo = tmp_path / "repo"
    code, out, err = run(capsys, "--repo", repo, "import", zoo.path("iris.pt2"), "--name", "iris")
    assert code == 0, err
    assert "imported iris:1 (torch -> onnxruntime)" in out
    code, out, _ = run(capsys, "--repo", repo, "show", "iris")
    assert code == 0 and "torch -> onnxruntime (onnx_onnxv1)" in out
    assert "torch.onnx.export(dynamo=True)" in out
    _check_against_module(Repository(repo), "iris", zoo.iris_mlp, zoo.iris.x_test,
                          classifier=True)
    np.save(tmp_path / "rows.npy", zoo.iris.x_test[:7])
    code, out, err = run(capsys, "--repo", repo, "predict", "iris", "-i", tmp_path / "rows.npy")
    assert code == 0, err
    response = json.loads(out)["outputs"][0]
    assert response["shape"] == [7, 3]
    want = tb.predict(zoo.iris_mlp, zoo.iris.x_test[:7])
    np.testing.assert_allclose(np.array(response["data"]).reshape(7, 3), want, atol=1e-4)


def test_cli_fallback_is_visible_in_show(capsys, tmp_path, zoo):
    repo = tmp_path / "repo"
    code, out, err = run(capsys, "--repo", repo, "import", zoo.path("erfinv.pt"), "--name", "erf")
    assert code == 0, err
    assert "imported erf:1 (torch -> torchscript)" in out
    code, out, _ = run(capsys, "--repo", repo, "show", "erf")
    assert "torch -> torchscript (pytorch_libtorch)" in out
    assert "note      served natively by torchscript" in out
    _check_against_module(Repository(repo), "erf", zoo.erfinv, zoo.iris.x_test, classifier=True)


def test_cli_scripted_module_needs_and_uses_samples(capsys, tmp_path, zoo):
    repo = tmp_path / "repo"
    source = zoo.path("iris_scripted.pt")
    code, _, err = run(capsys, "--repo", repo, "import", source, "--name", "s")
    assert code == 2 and "records no input shapes" in err and "--samples" in err
    assert not repo.exists() or Repository(repo).models() == []
    np.save(tmp_path / "samples.npy", zoo.iris.x_test[:20])
    code, _out, err = run(capsys, "--repo", repo, "import", source, "--name", "s",
                         "--samples", tmp_path / "samples.npy")
    assert code == 0, err
    manifest = Repository(repo).open("s").manifest
    assert manifest.runtime == "onnxruntime" and manifest.parity.samples == 20
    assert manifest.parity.inputs == "given in samples.npy"
    _check_against_module(Repository(repo), "s", zoo.iris_mlp, zoo.iris.x_test, classifier=True)


# --------------------------------------------------------------- bad input


def _state_dict(zoo, path):
    torch.save(zoo.iris_mlp.state_dict(), path)


def _checkpoint(zoo, path):
    torch.save({"epoch": 3, "model_state_dict": zoo.iris_mlp.state_dict()}, path)


def _pickled_module(zoo, path):
    torch.save(zoo.iris_mlp, path)


def _legacy_pickle(zoo, path):
    torch.save(zoo.iris_mlp.state_dict(), path, _use_new_zipfile_serialization=False)


def _text(zoo, path):
    path.write_text("this is not a model\n")


def _other_zip(zoo, path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("report/summary.csv", "a,b\n1,2\n")


def _corrupted(zoo, path):
    # One flipped byte inside the weights: the zip directory is intact, the CRC is not.
    data = bytearray(zoo.path("iris.pt2").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = next(i for i in archive.infolist() if "/data/weights/" in i.filename
                    and i.file_size > 64)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncated(zoo, path):
    data = zoo.path("iris.pt2").read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD = [
    ("weights.pt", _state_dict, None, "holds a bare state_dict (4 tensors, e.g. '0.weight')"),
    ("ckpt.pt", _checkpoint, None, "training checkpoint holding a state_dict under "
                                   "'model_state_dict'"),
    ("module.pt", _pickled_module, None, "holds Python objects"),
    ("legacy.pt", _legacy_pickle, None, "legacy (non-zip) torch.save pickle"),
    ("model.pt", _text, None, "model.pt is not a model file ferry recognises"),
    ("model.pt2", _other_zip, None, "model.pt2 is not a model file ferry recognises"),
    ("model.pt2", _other_zip, "torch", "model.pt2 does not look like a torch model"),
    ("bad.pt2", _corrupted, None, "bad.pt2 is a corrupted torch archive"),
    ("cut.pt2", _truncated, None, "cut.pt2 is a torch archive whose zip directory is "
                                  "unreadable"),
]


@pytest.mark.parametrize(("name", "make", "fmt", "message"), BAD,
                         ids=["state-dict", "checkpoint", "pickled-module", "legacy-pickle",
                              "text-named-pt", "zip-named-pt2", "zip-named-pt2-format-torch",
                              "corrupted-pt2", "truncated-pt2"])
def test_bad_torch_files_one_line_exit_2_nothing_written(capsys, tmp_path, zoo, name, make,
                                                         fmt, message):
    path = tmp_path / name
    make(zoo, path)
    repo = tmp_path / "repo"
    extra = ["--format", fmt] if fmt else []
    code, out, err = run(capsys, "--repo", repo, "import", path, "--name", "x", *extra)
    assert code == 2, err
    report = err[err.index("error: "):].strip().splitlines()  # after the progress lines
    assert message in report[0]
    assert len(report) == 1 or (len(report) == 2 and report[1].startswith("hint: "))
    assert "Traceback" not in err and out == ""
    assert not repo.exists() or Repository(repo).models() == []


@pytest.mark.parametrize("make", [_state_dict, _checkpoint, _pickled_module, _legacy_pickle],
                         ids=["state-dict", "checkpoint", "pickled-module", "legacy-pickle"])
def test_refusals_say_what_to_save_instead(repo, tmp_path, zoo, make):
    make(zoo, tmp_path / "w.pt")
    with pytest.raises(ArtifactError) as info:
        import_model(repo, tmp_path / "w.pt", "w")
    assert "torch.export.save(torch.export.export(model.eval()" in info.value.hint
    assert "torch.jit.save(torch.jit.script(model)" in info.value.hint
    _nothing_written(repo)


class _Payload:
    """Unpickling this object opens (creates) a file: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_never_runs(repo, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weights": torch.zeros(2), "trap": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UntrustedArtifactError, match="weights_only=True only"):
        import_model(repo, tmp_path / "evil.pt", "evil")
    assert not marker.exists()  # torch.load(weights_only=True) refused the payload
    _nothing_written(repo)


def test_pt2_with_a_pickled_constant_is_refused_before_torch_loads_it(repo, tmp_path, zoo):
    # Rewrite the weights config as torch writes it for a payload saved with pickle.
    source = zoo.path("iris.pt2")
    target = tmp_path / "pickled.pt2"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename.endswith("_weights_config.json"):
                config = json.loads(data)
                for meta in config["config"].values():
                    meta["use_pickle"] = True
                data = json.dumps(config).encode()
            new.writestr(info, data)
    with pytest.raises(UntrustedArtifactError, match="stored as a pickled Python object"):
        import_model(repo, target, "p")
    _nothing_written(repo)


def test_not_torch_at_all_is_unsupported(repo, tmp_path):
    (tmp_path / "model.pt").write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(UnsupportedFormatError, match="not a model file ferry recognises"):
        import_model(repo, tmp_path / "model.pt", "x")
    _nothing_written(repo)


def test_serving_a_native_torch_model_names_the_extra_simulated_missing_extra(
        capsys, tmp_path, zoo, monkeypatch):
    repo = tmp_path / "repo"
    code, _, err = run(capsys, "--repo", repo, "import", zoo.path("iris.pt2"), "--name", "n",
                       "--native")
    assert code == 0, err
    np.save(tmp_path / "rows.npy", zoo.iris.x_test[:2])
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    code, out, err = run(capsys, "--repo", repo, "predict", "n", "-i", tmp_path / "rows.npy")
    assert code == 2 and out == ""
    assert "running PyTorch models needs the optional dependencies of ferry[torch]" in err
    assert "pip install 'ferry[torch]'" in err and "Traceback" not in err


class _Halves(nn.Module):
    """Two inputs of two dtypes: the top half of a digit as int64 pixel tokens (embedded),
    the bottom half as standardised floats."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(17, 4)
        self.head = tb.mlp(32 * 4 + 32, 16, 10)

    def forward(self, tokens: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.embed(tokens).flatten(1), pixels], 1))


def test_two_inputs_of_two_dtypes(repo, tmp_path, zoo):
    from sklearn.datasets import load_digits

    raw = load_digits().data
    order = np.random.default_rng(0).permutation(len(raw))
    tokens = torch.from_numpy(raw[order][:, :32].astype(np.int64))
    pixels = torch.from_numpy(np.concatenate([zoo.digits.x_train, zoo.digits.x_test])[:, 32:])
    labels = torch.from_numpy(np.concatenate([zoo.digits.y_train, zoo.digits.y_test]))
    module = _Halves()
    optimizer = torch.optim.Adam(module.parameters(), lr=0.02)
    for _ in range(40):
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(tokens, pixels), labels).backward()
        optimizer.step()
    module.eval()
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's pytree deprecations
        program = torch.export.export(module, (tokens[:4], pixels[:4]),
                                      dynamic_shapes=({0: batch}, {0: batch}))
    torch.export.save(program, str(tmp_path / "halves.pt2"))

    manifest = import_model(repo, tmp_path / "halves.pt2", "halves")
    assert manifest.runtime == "onnxruntime"
    assert [(s.name, s.datatype, s.shape) for s in manifest.signature.inputs] == [
        ("tokens", "INT64", (-1, 32)), ("pixels", "FP32", (-1, 32))]
    stored = repo.open("halves")
    with load_runtime("onnxruntime", stored.artifact_path, manifest.signature) as runtime:
        for rows in (1, 7):
            got = runtime.predict({"tokens": tokens[-rows:].numpy(),
                                   "pixels": pixels[-rows:].numpy()})["output"]
            with torch.no_grad():
                want = module(tokens[-rows:], pixels[-rows:]).numpy()
            assert np.max(np.abs(got - want)) <= manifest.parity.tolerance
            np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def test_native_and_converted_torch_models_answer_over_rest(tmp_path, zoo):
    # The real engine and REST server (tests/rest_server.py) load each version with the
    # runtime its manifest names: ONNX Runtime, torch.export, and TorchScript side by side.
    import httpx

    from rest_server import make_engine, serve

    repo = Repository(tmp_path / "repo")
    import_model(repo, zoo.path("iris.pt2"), "onnx")
    import_model(repo, zoo.path("iris.pt2"), "program", options=ImportOptions(native=True))
    import_model(repo, zoo.path("erfinv.pt"), "script")  # no ONNX erfinv: TorchScript serves
    rows = zoo.iris.x_test[:7]
    expected = {"onnx": tb.predict(zoo.iris_mlp, rows), "program": tb.predict(zoo.iris_mlp, rows),
                "script": tb.predict(zoo.erfinv, rows)}
    with serve(make_engine(repo), repo) as served, httpx.Client(base_url=served.url,
                                                               timeout=60) as http:
        for name, want in expected.items():
            tensor = repo.manifest(name).signature.inputs[0].name  # 'input', or 'x' (erfinv)
            body = {"inputs": [{"name": tensor, "shape": [7, 4], "datatype": "FP32",
                                "data": rows.ravel().tolist()}]}
            response = http.post(f"/v2/models/{name}/infer", json=body)
            assert response.status_code == 200, response.text
            out = response.json()["outputs"][0]
            got = np.asarray(out["data"], np.float32).reshape(out["shape"])
            assert np.max(np.abs(got - want)) <= 1e-4, name
            np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
            bad = {"inputs": [{"name": tensor, "shape": [1, 5], "datatype": "FP32",
                               "data": [0.0] * 5}]}
            assert http.post(f"/v2/models/{name}/infer", json=bad).status_code == 400


@pytest.mark.parametrize(("rows", "message"),
                         [(np.zeros((4, 5), np.float32), "mat1 and mat2 shapes cannot be "
                                                         "multiplied (4x5 and 4x16)"),
                          (np.zeros((4, 4), np.float64), "mat1 and mat2 must have the same "
                                                         "dtype")],
                         ids=["wrong-width", "float64"])
def test_scripted_module_with_samples_that_do_not_fit(capsys, tmp_path, zoo, rows, message):
    np.save(tmp_path / "rows.npy", rows)
    repo = tmp_path / "repo"
    code, out, err = run(capsys, "--repo", repo, "import", zoo.path("iris_scripted.pt"),
                         "--name", "s", "--samples", tmp_path / "rows.npy")
    assert code == 2 and out == ""
    report = err[err.index("error: "):].strip().splitlines()
    assert report[0].startswith("error: the module fails on the --samples inputs: ")
    assert message in report[0] and len(report) == 2 and "Traceback" not in err
    assert not repo.exists() or Repository(repo).models() == []


class _Binned(nn.Module):
    """Iris features binned into 5 tokens each, embedded: indices 5 and up are out of range."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(4 * 3, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens).flatten(1))


def test_source_that_fails_on_generated_samples_asks_for_real_ones(repo, tmp_path, zoo):
    def binned(x):
        return np.clip(np.floor(x + 2.5), 0, 4).astype(np.int64)

    tokens = torch.from_numpy(binned(zoo.iris.x_train))
    module = _Binned()
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(tokens), torch.from_numpy(zoo.iris.y_train)).backward()
        optimizer.step()
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's pytree deprecations
        program = torch.export.export(module, (tokens[:4],),
                                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp_path / "binned.pt2"))

    # Generated integer samples are drawn from [0, 10): the embedding refuses 5..9. That is
    # the source failing, not the conversion: reported, not served natively.
    with pytest.raises(ArtifactError, match="the source model fails on the parity inputs") as info:
        import_model(repo, tmp_path / "binned.pt2", "binned")
    assert "--samples" in info.value.hint
    _nothing_written(repo)

    test = binned(zoo.iris.x_test)
    manifest = import_model(repo, tmp_path / "binned.pt2", "binned",
                            options=ImportOptions(samples=test))
    assert manifest.runtime == "onnxruntime" and manifest.parity.samples == len(test)
    stored = repo.open("binned")
    with load_runtime("onnxruntime", stored.artifact_path, manifest.signature) as runtime:
        got = runtime.predict({"tokens": test})["output"]
    with torch.no_grad():
        want = module(torch.from_numpy(test)).numpy()
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    assert (want.argmax(1) == zoo.iris.y_test).mean() > 0.6
