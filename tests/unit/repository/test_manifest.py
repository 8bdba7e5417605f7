"""Manifests written before the ``parent`` field was removed still load."""

from __future__ import annotations

import json

import pytest

from ferry.errors import IntegrityError
from ferry.repository import Manifest, SourceInfo, now_utc, read_manifest
from ferry.signature import Signature, TensorSpec


def manifest() -> Manifest:
    return Manifest(
        name="m", version=1, format="onnx", runtime="onnxruntime", platform="onnx_onnxv1",
        artifact="model.onnx",
        signature=Signature(inputs=(TensorSpec(name="x", datatype="FP32", shape=(-1, 4)),),
                            outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1, 2)),)),
        files={}, source=SourceInfo(filename="m.onnx", sha256="0" * 64, size=3, format="onnx"),
        created=now_utc(),
    )


def write(tmp_path, data: dict) -> object:
    path = tmp_path / "m" / "1" / "manifest.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


def test_a_manifest_with_a_null_parent_loads(tmp_path):
    data = json.loads(manifest().to_json())
    assert "parent" not in data
    loaded = read_manifest(write(tmp_path, {**data, "parent": None}))
    assert loaded == manifest().model_copy(update={"created": loaded.created})
    assert "parent" not in json.loads(loaded.to_json())


def test_a_manifest_with_a_parent_version_is_refused_like_any_unknown_field(tmp_path):
    data = json.loads(manifest().to_json())
    with pytest.raises(IntegrityError, match="manifest field 'parent'"):
        read_manifest(write(tmp_path, {**data, "parent": 3}))
