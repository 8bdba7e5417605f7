"""ONNX import: checker, shape inference, external data kept inside the model's folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from builders import mlp_onnx
from ferry.errors import (
    ArtifactError,
    IntegrityError,
    UnsupportedFormatError,
    UntrustedArtifactError,
)
from ferry.formats import import_model
from ferry.runtimes import load_runtime


def _nothing_written(repo):
    assert repo.models() == []
    staging = repo.root / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def test_onnx_imports_with_reference_parity(repo, mlp_path):
    manifest = import_model(repo, mlp_path, "mlp")
    assert manifest.format == "onnx" and manifest.converter is None
    assert manifest.signature.inputs[0].shape == (-1, 4)
    assert manifest.parity.method == "onnxruntime vs onnx.reference evaluator"
    assert manifest.parity.max_abs_diff["scores"] <= 1e-5
    stored = repo.open("mlp")
    assert stored.artifact_path.read_bytes() == mlp_path.read_bytes()
    x = np.random.default_rng(3).standard_normal((7, 4)).astype(np.float32)
    with load_runtime("onnxruntime", stored.artifact_path, manifest.signature) as rt:
        assert rt.predict({"x": x})["scores"].shape == (7, 3)


def _external(folder: Path, location: str | None = None) -> Path:
    model = onnx.load(str(mlp_onnx(folder / "ext.onnx")))
    onnx.save(model, str(folder / "ext.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    if location is not None:
        model = onnx.load(str(folder / "ext.onnx"), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(model, str(folder / "ext.onnx"))
    return folder / "ext.onnx"


def test_external_data_inside_the_folder_is_copied_and_hashed(repo, tmp_path):
    (tmp_path / "m").mkdir()
    manifest = import_model(repo, _external(tmp_path / "m"), "ext")
    assert set(manifest.files) == {"model.onnx", "weights.bin"}
    weights = repo.root / "ext" / "1" / "weights.bin"
    weights.chmod(weights.stat().st_mode | stat.S_IWUSR)
    with weights.open("r+b") as handle:
        handle.write(b"\0\0\0\0")
    with pytest.raises(IntegrityError, match="file 'weights.bin' does not match"):
        repo.open("ext")


@pytest.mark.parametrize("where", ["parent", "absolute", "link"])
def test_external_data_outside_the_folder_is_refused(repo, tmp_path, where):
    folder = tmp_path / "m"
    folder.mkdir()
    path = _external(folder)
    secret = tmp_path / "secret.bin"
    os.replace(folder / "weights.bin", secret)
    if where == "parent":
        path = _external(folder, "../secret.bin")
    elif where == "absolute":
        path = _external(folder, str(secret))
    else:  # the name is inside, but it is a link pointing out
        os.symlink(secret, folder / "weights.bin")
    with pytest.raises(UntrustedArtifactError, match="outside the folder of ext.onnx"):
        import_model(repo, path, "ext")
    _nothing_written(repo)


def test_external_data_that_is_missing_or_short(repo, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    path = _external(folder)
    (folder / "weights.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ArtifactError, match="ends at byte .* but the file has 8 bytes"):
        import_model(repo, path, "ext")
    os.unlink(folder / "weights.bin")
    with pytest.raises(ArtifactError, match="missing or not a regular file"):
        import_model(repo, path, "ext")
    _nothing_written(repo)


def test_checker_failures_are_refused(repo, tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["z"])],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("y", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(ArtifactError, match="the ONNX checker refuses the model"):
        import_model(repo, tmp_path / "bad.onnx", "bad")
    _nothing_written(repo)


def test_undefined_node_input_is_refused(repo, tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["missing"], ["z"])], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(ArtifactError, match="the ONNX checker refuses"):
        import_model(repo, tmp_path / "bad.onnx", "bad")
    _nothing_written(repo)


def test_truncated_onnx_is_refused(repo, tmp_path, mlp_path):
    data = mlp_path.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="cut.onnx"):
        import_model(repo, tmp_path / "cut.onnx", "cut")
    _nothing_written(repo)


def test_garbage_named_onnx_is_not_recognised(repo, tmp_path):
    (tmp_path / "model.onnx").write_bytes(os.urandom(256).replace(b"\x08", b"\x09"))
    with pytest.raises(UnsupportedFormatError):
        import_model(repo, tmp_path / "model.onnx", "junk")
    with pytest.raises(ArtifactError):
        import_model(repo, tmp_path / "model.onnx", "junk", format="onnx")
    _nothing_written(repo)


def test_non_tensor_outputs_are_refused(repo, tmp_path):
    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x"], ["seq"])], "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "seq.onnx"))
    with pytest.raises(ArtifactError, match="'seq' is a sequence_type, not a tensor"):
        import_model(repo, tmp_path / "seq.onnx", "seq")
    _nothing_written(repo)
