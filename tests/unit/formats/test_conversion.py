"""The one conversion step (issue 17, item 3): --native, a failed export, no fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.errors import ConversionError, InputError
from ferry.formats.base import Converted, ImportOptions
from ferry.formats.conversion import Fallback, convert_or_fall_back
from ferry.signature import Signature, TensorSpec

SIG = Signature(inputs=(TensorSpec(name="x", datatype="FP32", shape=(-1, 2)),),
                outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1, 1)),))


def _store(workdir: Path, note: str) -> Converted:
    (workdir / "model.bin").write_bytes(b"source")
    return Converted(artifact="model.bin", signature=SIG, runtime="native", notes=[note])


FALLBACK = Fallback("native (framework 1.0)", _store)


def _failing_export(error: Exception):
    def export(path: Path) -> Converted:
        path.write_bytes(b"half an onnx file")
        raise error

    return export


def test_native_flag_stores_the_source_without_exporting(tmp_path):
    def export(path: Path) -> Converted:
        raise AssertionError("--native must not export")

    converted = convert_or_fall_back(tmp_path, ImportOptions(native=True), export, FALLBACK)
    assert converted.notes == ["served natively by native (framework 1.0): --native was given"]
    named = Fallback("sklearn (scikit-learn 1.9)", _store, asked_runtime="sklearn")
    converted = convert_or_fall_back(tmp_path, ImportOptions(native=True), export, named)
    assert converted.notes == ["served natively by sklearn: --native was given"]


def test_a_failed_export_is_discarded_and_the_note_says_why(tmp_path):
    export = _failing_export(ConversionError("the converter has no rule for op Erfinv"))
    converted = convert_or_fall_back(tmp_path, ImportOptions(), export, FALLBACK)
    assert converted.runtime == "native"
    assert converted.notes == ["served natively by native (framework 1.0): the ONNX conversion "
                               "failed: the converter has no rule for op Erfinv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]  # no half ONNX file


def test_without_a_fallback_the_export_error_is_raised(tmp_path):
    export = _failing_export(ConversionError("skl2onnx cannot convert this Thing"))
    with pytest.raises(ConversionError, match="skl2onnx cannot convert this Thing"):
        convert_or_fall_back(tmp_path, ImportOptions(), export, None)


def test_a_users_mistake_is_raised_not_fallen_back_on(tmp_path):
    export = _failing_export(InputError("--samples: no array for input 'x'"))
    with pytest.raises(InputError, match="no array for input 'x'"):
        convert_or_fall_back(tmp_path, ImportOptions(), export, FALLBACK)
