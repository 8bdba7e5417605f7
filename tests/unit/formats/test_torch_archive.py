"""Telling torch files apart from their bytes alone, and refusing unsafe .pt2 payloads.

Pure logic: the archives are written here with zipfile in the layouts torch writes, and
nothing imports torch (checked in a subprocess).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from ferry.errors import ArtifactError, UntrustedArtifactError
from ferry.formats.torch import archive_kind
from ferry.runtimes.torch import check_pt2_archive

LEGACY = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b".\x80\x02"


def _zip(path, members: dict[str, bytes | str]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _pt2(path, **extra: bytes | str):
    weights = {"config": {"0.weight": {"path_name": "weight_0", "is_param": True,
                                       "use_pickle": False}}}
    return _zip(path, {"m/archive_format": "pt2", "m/models/model.json": "{}",
                       "m/data/weights/model_weights_config.json": json.dumps(weights),
                       "m/data/weights/weight_0": b"\0" * 16, **extra})


KINDS = [
    ({"m/archive_format": "pt2", "m/models/model.json": "{}"}, "export"),
    ({"m/constants.pkl": b"", "m/code/__torch__.py": "", "m/data.pkl": b""}, "torchscript"),
    ({"archive/data.pkl": b"", "archive/data/0": b"", "archive/version": "3"}, "pickle"),
    ({"report/summary.csv": "a,b"}, None),
    ({"a/data.pkl": b"", "b/data.pkl": b""}, None),
]


@pytest.mark.parametrize(("members", "kind"), KINDS,
                         ids=["pt2", "torchscript", "torch-save", "other-zip", "two-roots"])
def test_zip_layouts(tmp_path, members, kind):
    assert archive_kind(_zip(tmp_path / "f.pt", members)) == kind


def test_legacy_pickle_and_plain_files(tmp_path):
    (tmp_path / "legacy.pt").write_bytes(LEGACY)
    assert archive_kind(tmp_path / "legacy.pt") == "legacy"
    (tmp_path / "text.pt").write_text("hello")
    assert archive_kind(tmp_path / "text.pt") is None
    assert archive_kind(tmp_path) is None


def test_truncated_torch_zip_is_damaged_not_unknown(tmp_path):
    data = _pt2(tmp_path / "m.pt2").read_bytes()
    (tmp_path / "cut.pt2").write_bytes(data[: len(data) // 2])
    assert archive_kind(tmp_path / "cut.pt2") == "damaged"


def test_safe_pt2_layout_passes(tmp_path):
    check_pt2_archive(_pt2(tmp_path / "m.pt2"))


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        ({"m/data/aotinductor/model/model.so": b"\x7fELF"}, UntrustedArtifactError,
         "AOTInductor-compiled native code"),
        ({"m/data/weights/model.pt": b""}, UntrustedArtifactError, "legacy pickled layout"),
        ({"m/data/constants/model_constants_config.json": json.dumps(
            {"config": {"lut": {"path_name": "custom_obj_0"}}})}, UntrustedArtifactError,
         "constant 'lut' is stored as a pickled Python object"),
    ],
    ids=["aotinductor", "pickled-weights-layout", "pickled-constant"],
)
def test_unsafe_pt2_payloads_are_refused(tmp_path, extra, error, message):
    with pytest.raises(error, match=message):
        check_pt2_archive(_pt2(tmp_path / "m.pt2", **extra))


def test_not_a_pt2_archive(tmp_path):
    with pytest.raises(ArtifactError, match="not a torch.export archive"):
        check_pt2_archive(_zip(tmp_path / "m.pt2", {"m/data.pkl": b""}))
    (tmp_path / "t.pt2").write_text("text")
    with pytest.raises(ArtifactError, match="not a readable torch.export archive"):
        check_pt2_archive(tmp_path / "t.pt2")


def test_reading_torch_files_imports_no_framework(tmp_path):
    path = _pt2(tmp_path / "m.pt2")
    code = (
        "import sys; from pathlib import Path; from ferry.formats import detect_format; "
        "from ferry.runtimes.torch import check_pt2_archive; "
        f"assert detect_format(Path({str(path)!r})).format == 'torch'; "
        f"check_pt2_archive(Path({str(path)!r})); "
        "print(sorted({'tensorflow', 'torch', 'onnxscript', 'tf2onnx'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
