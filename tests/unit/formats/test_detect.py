"""Format detection from bytes: no framework is imported to decide."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from ferry.errors import ArtifactError, NotFoundError, UnsupportedFormatError
from ferry.formats import detect_format

HDF5 = b"\x89HDF\r\n\x1a\n" + b"\0" * 64
ONNX = b"\x08\x09\x12\x07pytorch" + b"\0" * 16


def _keras_zip(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("metadata.json", "{}")
        z.writestr("model.weights.h5", b"")
    return path


def test_detects_by_content_not_name(tmp_path):
    (tmp_path / "weird.bin").write_bytes(HDF5)
    assert detect_format(tmp_path / "weird.bin").format == "keras"
    assert detect_format(_keras_zip(tmp_path / "model.zip")).format == "keras"
    (tmp_path / "model.h5").write_bytes(ONNX)
    assert detect_format(tmp_path / "model.h5").format == "onnx"


def test_detection_imports_no_framework(tmp_path):
    (tmp_path / "m.h5").write_bytes(HDF5)
    code = (
        "import sys; from pathlib import Path; from ferry.formats import detect_format; "
        f"detect_format(Path({str(tmp_path / 'm.h5')!r})); "
        "print(sorted({'tensorflow', 'keras', 'torch', 'sklearn'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        detect_format(tmp_path / "nope.h5")
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"empty.h5 is empty \(0 bytes\)"):
        detect_format(tmp_path / "empty.h5")
    (tmp_path / "adir").mkdir()
    with pytest.raises(UnsupportedFormatError, match="adir is a directory"):
        detect_format(tmp_path / "adir")


def test_unknown_bytes(tmp_path):
    (tmp_path / "notes.txt").write_text("hello, I am not a model")
    with pytest.raises(UnsupportedFormatError, match="not a model file ferry recognises"):
        detect_format(tmp_path / "notes.txt")


def test_mismatched_format_says_what_it_looks_like(tmp_path):
    (tmp_path / "m.onnx").write_bytes(ONNX)
    with pytest.raises(UnsupportedFormatError, match="does not look like a keras model; it looks like a onnx model"):
        detect_format(tmp_path / "m.onnx", "keras")
    with pytest.raises(UnsupportedFormatError, match="unknown format 'caffe'"):
        detect_format(tmp_path / "m.onnx", "caffe")
    assert detect_format(tmp_path / "m.onnx", "onnx").format == "onnx"


def test_zip_with_undecodable_member_names_is_not_a_crash(tmp_path):
    # A corrupted central directory can hold bytes that are not UTF-8 in a name flagged UTF-8.
    path = _keras_zip(tmp_path / "model.keras")
    data = bytearray(path.read_bytes())
    entry = data.rfind(b"PK\x01\x02")
    data[entry + 9] |= 0x08  # general purpose flag bit 11 (0x0800): names are UTF-8
    data[entry + 46:entry + 50] = b"\xff\xfe\xfd\xfc"
    path.write_bytes(bytes(data))
    with pytest.raises(UnsupportedFormatError, match="not a model file ferry recognises"):
        detect_format(path)
