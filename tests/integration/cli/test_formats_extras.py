"""``ferry formats`` and missing extras (issue 5, item 6) for the torch and SavedModel formats.

A missing extra is simulated: ``importlib.util.find_spec`` answers None for the framework's
modules, as it does on a machine where ``pip install ferry`` installed the core only. The
torch/TensorFlow files below are fakes with the right layout: detection reads bytes only,
and the import must stop at the missing extra before anything would load them.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile

import pytest

from ferry.cli import main
from ferry.errors import MissingDependencyError
from ferry.formats import get_importer
from ferry.repository import Repository


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_formats_lists_torch_and_savedmodel_with_converters(capsys):
    code, out, _ = run(capsys, "formats", "--json")
    assert code == 0
    rows = {row["format"]: row for row in json.loads(out)}
    assert rows["torch"]["converter"].startswith("torch.onnx.export")
    assert rows["torch"]["native_runtime"] == "torch / torchscript"
    assert rows["torch"]["extra"] == "torch" and rows["torch"]["installed"] is True
    assert rows["savedmodel"]["converter"].startswith("tf2onnx")
    assert rows["savedmodel"]["native_runtime"] == "tensorflow"
    assert rows["savedmodel"]["extra"] == "tensorflow" and rows["savedmodel"]["installed"] is True
    code, out, _ = run(capsys, "formats")
    assert code == 0 and "savedmodel" in out and "torch" in out


@pytest.fixture
def without(monkeypatch):
    """Make ``find_spec`` report the given top-level modules as not installed."""

    def hide(*modules: str) -> None:
        real = importlib.util.find_spec

        def find_spec(name, *args, **kwargs):
            if name.split(".")[0] in modules:
                return None
            return real(name, *args, **kwargs)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    return hide


def _fake_pt2(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/archive_format", "pt2")
        archive.writestr("model/models/model.json", "{}")
    return path


def _fake_savedmodel(path):
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"\x08\x01")
    return path


@pytest.mark.parametrize(
    ("hidden", "make", "extra"),
    [(("torch",), lambda p: _fake_pt2(p / "model.pt2"), "torch"),
     (("onnxscript",), lambda p: _fake_pt2(p / "model.pt2"), "torch"),
     (("tensorflow",), lambda p: _fake_savedmodel(p / "exported"), "tensorflow")],
    ids=["torch", "onnxscript", "tensorflow"],
)
def test_import_names_the_extra_simulated_missing_extra(capsys, tmp_path, without, hidden, make,
                                                        extra):
    source = make(tmp_path)
    without(*hidden)
    repo = tmp_path / "repo"
    code, out, err = run(capsys, "--repo", repo, "import", source, "--name", "m")
    assert code == 2, err
    assert f"needs the optional dependencies of ferry[{extra}], which are not installed" in err
    assert f"hint: install them with: pip install 'ferry[{extra}]'" in err
    assert "Traceback" not in err and "ImportError" not in err and out == ""
    assert not repo.exists() or Repository(repo).models() == []


def test_formats_shows_the_install_line_simulated_missing_extra(capsys, without):
    without("torch", "tensorflow")
    _code, out, _ = run(capsys, "formats", "--json")
    rows = {row["format"]: row for row in json.loads(out)}
    assert rows["torch"]["installed"] is False and rows["savedmodel"]["installed"] is False
    assert rows["onnx"]["installed"] is True
    with pytest.raises(MissingDependencyError, match=r"pip install 'ferry\[torch\]'"):
        get_importer("torch").ensure_available()
