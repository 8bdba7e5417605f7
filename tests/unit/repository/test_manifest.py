"""Manifests: old ones (``"parent": null``) still load; an optimized version names its parent."""

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


def test_an_optimized_manifest_round_trips_with_parent_and_steps(tmp_path):
    from ferry.repository import Optimization, OptimizationStep

    optimized = manifest().model_copy(update={
        "version": 2, "parent": 1,
        "optimization": Optimization(
            steps=[OptimizationStep(name="quantize", settings={"mode": "dynamic"})],
            tools={"onnxruntime": "1.0"}, report={"quality": {"drop": 0.0}}),
    })
    data = json.loads(optimized.to_json())
    assert data["parent"] == 1 and data["optimization"]["steps"][0]["name"] == "quantize"
    path = tmp_path / "m" / "2" / "manifest.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(optimized.to_json())
    assert read_manifest(path) == optimized


def test_a_parent_that_is_not_a_version_number_is_refused(tmp_path):
    data = json.loads(manifest().to_json())
    with pytest.raises(IntegrityError, match="manifest field 'parent'"):
        read_manifest(write(tmp_path, {**data, "parent": "m:one"}))
