"""scikit-learn safety without scikit-learn: the skops allow-list and detection by bytes.

Issue 5: unknown skops types refused; pickles recognised so they can be refused.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile

import pytest

from ferry.formats import detect_format, get_importer
from ferry.formats.sklearn import is_allowed


@pytest.mark.parametrize("name", [
    "sklearn.tree._tree.Tree",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "numpy.float64",
    "scipy.sparse._csr.csr_matrix",
], ids=["tree", "encoder", "numpy-scalar", "sparse"])
def test_estimator_types_are_allowed(name):
    assert is_allowed(name)


@pytest.mark.parametrize("name", [
    "builtins.eval",
    "os.system",
    "mymodule.Doubler",
    "sklearnx.Evil",
    "numpy.f2py.compile",
    "numpy.lib.npyio.load",
    "numpy.load",
    "numpy.testing.assert_equal",
    "scipy.io.loadmat",
], ids=["eval", "os", "user-class", "lookalike-prefix", "f2py", "npyio", "np-load",
        "np-testing", "scipy-io"])
def test_other_types_are_refused(name):
    assert not is_allowed(name)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_of_every_modern_protocol_are_sklearn(tmp_path, protocol):
    path = tmp_path / "model.bin"
    path.write_bytes(pickle.dumps({"weights": [1, 2]}, protocol=protocol))
    assert detect_format(path).format == "sklearn"


def test_skops_zip_detected_without_importing_a_framework(tmp_path):
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", "{}")
    code = (
        "import sys; from pathlib import Path; from ferry.formats import detect_format; "
        f"print(detect_format(Path({str(path)!r})).format); "
        "print(sorted({'sklearn', 'skl2onnx', 'skops', 'joblib'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["sklearn", "[]"]


def test_plain_zip_and_text_are_not_sklearn(tmp_path):
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    text = tmp_path / "notes.skops"
    text.write_text("not a model")
    importer = get_importer("sklearn")
    assert not importer.sniff(path) and not importer.sniff(text)
