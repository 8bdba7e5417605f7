"""What the models page shows of a manifest: its figures, and lineage when it has one."""

from __future__ import annotations

from typing import Any

from ferry.console.catalog import _version_row
from ferry.repository import Manifest, ParityReport, SourceInfo, now_utc
from ferry.signature import Signature, TensorSpec


def manifest() -> Manifest:
    return Manifest(
        name="digits", version=2, format="keras", runtime="onnxruntime", platform="onnx_onnxv1",
        artifact="model.onnx",
        signature=Signature(inputs=(TensorSpec(name="x", datatype="FP32", shape=(-1, 64)),),
                            outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1, 10)),)),
        files={}, source=SourceInfo(filename="my_model.h5", sha256="ab" * 32, size=3,
                                    format="keras", framework="keras 3"),
        converter="tf2onnx 1.17", created=now_utc(), labels=[str(d) for d in range(10)],
        parity=ParityReport(method="onnxruntime vs keras", samples=32, inputs="given",
                            tolerance=1e-4, max_abs_diff={"y": 2e-6}, mismatches={"y": 0},
                            passed=True),
    )


class Optimized:
    """A manifest as ``ferry optimize`` writes it (``parent`` and ``optimization`` fields)."""

    def __init__(self, base: Manifest, extra: dict[str, Any]) -> None:
        self._base, self._extra = base, extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return {**self._base.model_dump(**kwargs), **self._extra}


def test_an_imported_version_has_its_figures_and_no_lineage():
    row = _version_row(manifest())
    assert row["version"] == "2" and row["format"] == "keras"
    assert row["runtime"] == "onnxruntime" and row["converter"] == "tf2onnx 1.17"
    assert row["source"]["sha256"] == "ab" * 32 and row["source"]["filename"] == "my_model.h5"
    assert row["parity"]["passed"] is True and row["parity"]["max_abs_diff"] == {"y": 2e-6}
    assert row["labels"][9] == "9" and row["inputs"][0]["shape"] == [-1, 64]
    assert row["lineage"] is None


def test_an_optimized_version_shows_its_parent_and_steps():
    optimized = Optimized(manifest(), {"parent": 1, "optimization": {
        "steps": [{"name": "fuse", "settings": {}, "summary": "12 nodes fused"},
                  {"name": "quantize", "settings": {"mode": "dynamic"}, "summary": "int8"}],
        "tools": {"onnxruntime": "1.23"}, "report": {}, "forced": False}})
    lineage = _version_row(optimized)["lineage"]  # type: ignore[arg-type]
    assert lineage == {"parent": 1, "forced": False,
                       "steps": [{"name": "fuse", "summary": "12 nodes fused"},
                                 {"name": "quantize", "summary": "int8"}]}
