"""Detection of XGBoost, LightGBM and PMML files from their bytes, and the safe PMML reader
(issue 5, items 4, 5 and 7): pure logic, no framework imported, no JVM started.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ferry.errors import ArtifactError, UnsupportedFormatError, UntrustedArtifactError
from ferry.formats.lightgbm import looks_like_lightgbm
from ferry.formats.pmml import PmmlImporter
from ferry.formats.xgboost import looks_like_xgboost
from ferry.runtimes.pmml import read_document

XGB_JSON = b'{"learner":{"attributes":{},"feature_names":[]'
XGB_UBJ_L = b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{L"
XGB_UBJ_I = b"{i\x07learner{"


@pytest.mark.parametrize("head", [XGB_JSON, b'  \n{"learner": {}}', XGB_UBJ_L, XGB_UBJ_I],
                         ids=["json", "json-indented", "ubj-int64", "ubj-int8"])
def test_xgboost_heads_are_recognised(head):
    assert looks_like_xgboost(head)


@pytest.mark.parametrize("head", [b'{"version": [2, 0]}', b"{L\x00\x07learner", b"{i\x07leaner{",
                                  b"tree\nversion=v4\n", b"\x80\x04\x95", b"{", b""],
                         ids=["other-json", "ubj-bad-length", "ubj-other-key", "lightgbm",
                              "pickle", "brace", "empty"])
def test_other_heads_are_not_xgboost(head):
    assert not looks_like_xgboost(head)


@pytest.mark.parametrize(("head", "expected"), [
    (b"tree\nversion=v4\nnum_class=1\n", True),
    (b"tree\r\nversion=v3\r\n", True),
    (b"tree\nnum_class=1\n", False),
    (XGB_JSON, False),
    (b"\x80\x04\x95", False),
], ids=["v4", "crlf", "no-version", "xgboost", "pickle"])
def test_lightgbm_heads(head, expected):
    assert looks_like_lightgbm(head) is expected


@pytest.mark.parametrize(("text", "expected"), [
    (b'<?xml version="1.0"?>\n<PMML version="4.4">', True),
    (b'\xef\xbb\xbf<?xml version="1.0"?><!-- by a tool --><PMML>', True),
    (b'<pmml:PMML xmlns:pmml="http://www.dmg.org/PMML-4_4">', True),
    (b'<?xml version="1.0"?>\n<html><PMML>', False),
    (b"PMML", False),
    (XGB_JSON, False),
], ids=["declaration", "bom-comment", "prefixed", "html", "text", "xgboost"])
def test_pmml_sniff(tmp_path, text, expected):
    path = tmp_path / "model.pmml"
    path.write_bytes(text)
    assert PmmlImporter().sniff(path) is expected


def _doc(body: str, model: str = "RegressionModel", function: str = "regression",
         prolog: str = "") -> str:
    return (f'<?xml version="1.0"?>{prolog}<PMML xmlns="http://www.dmg.org/PMML-4_4" '
            'version="4.4"><Header/><DataDictionary><DataField name="a" optype="continuous" '
            'dataType="double"/><DataField name="c" optype="categorical" dataType="string"/>'
            '<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>'
            f'<{model} functionName="{function}"><MiningSchema>{body}</MiningSchema></{model}>'
            "</PMML>")


GOOD = '<MiningField name="y" usageType="target"/><MiningField name="a"/>'


def test_reader_reads_type_function_and_fields(tmp_path):
    path = tmp_path / "m.pmml"
    path.write_text(_doc(GOOD))
    doc = read_document(path)
    assert (doc.model_type, doc.function, doc.inputs, doc.target) == (
        "RegressionModel", "regression", ["a"], "y")


BILLION_LAUGHS = ('<!DOCTYPE PMML [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
                  "]>")
XXE = '<!DOCTYPE PMML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'

BAD = [
    ("billion-laughs", _doc(GOOD, prolog=BILLION_LAUGHS), UntrustedArtifactError, "DOCTYPE"),
    ("xxe", _doc(GOOD, prolog=XXE), UntrustedArtifactError, "DOCTYPE"),
    ("bare-doctype", _doc(GOOD, prolog="<!DOCTYPE PMML>"), UntrustedArtifactError, "DOCTYPE"),
    ("truncated", _doc(GOOD)[:150], ArtifactError, "not well-formed XML"),
    ("mismatched", _doc(GOOD).replace("</MiningSchema>", "</Mining>"), ArtifactError,
     "not well-formed XML: mismatched tag"),
    ("not-pmml", '<?xml version="1.0"?><svg></svg>', ArtifactError, "root element is <svg>"),
    ("time-series", _doc(GOOD, "TimeSeriesModel", "timeSeries"), UnsupportedFormatError,
     "PMML model type TimeSeriesModel is not supported"),
    ("clustering", _doc(GOOD, "ClusteringModel", "clustering"), UnsupportedFormatError,
     "PMML model type ClusteringModel is not supported"),
    ("function", _doc(GOOD, "TreeModel", "mixed"), UnsupportedFormatError,
     "functionName='mixed' is not supported"),
    ("string-input", _doc(GOOD + '<MiningField name="c"/>'), UnsupportedFormatError,
     "input field 'c' has dataType 'string'"),
    ("no-inputs", _doc('<MiningField name="y" usageType="target"/>'), UnsupportedFormatError,
     "no input field"),
]


@pytest.mark.parametrize(("text", "error", "phrase"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_reader_refuses_with_one_clear_message(tmp_path, text, error, phrase):
    path = tmp_path / "m.pmml"
    path.write_text(text)
    with pytest.raises(error, match=phrase) as info:
        read_document(path)
    assert "\n" not in info.value.message and "m.pmml" in info.value.message


def test_nothing_heavy_is_imported_by_detection_or_the_reader(tmp_path):
    """Detecting and reading PMML/booster files imports no framework and starts no JVM."""
    path = tmp_path / "m.pmml"
    path.write_text(_doc(GOOD))
    script = (
        "import sys; from pathlib import Path\n"
        "from ferry.formats import detect_format\n"
        "from ferry.runtimes.pmml import read_document\n"
        f"assert detect_format(Path({str(path)!r})).format == 'pmml'\n"
        f"read_document(Path({str(path)!r}))\n"
        "heavy = {'xgboost', 'lightgbm', 'pypmml', 'py4j', 'jpype', 'onnxmltools'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_threshold_samples_fall_between_thresholds_and_cover_both_ends():
    import numpy as np

    from ferry.formats._trees import threshold_samples

    cuts = [(0, 1.0), (0, 2.0), (0, 4.0), (1, 100.5), (0, 2.0)]
    rows = threshold_samples(cuts, features=3, rows=200, seed=0)["input"]
    assert rows.shape == (200, 3) and rows.dtype == np.float32
    assert set(np.unique(rows[:, 0])) == {np.float32(v) for v in (0.0, 1.5, 3.0, 5.0)}
    assert set(np.unique(rows[:, 1])) == {np.float32(100.5 - 10.05), np.float32(100.5 + 10.05)}
    assert set(np.unique(rows[:, 2])) == {0.0}  # a feature no tree splits on
    again = threshold_samples(cuts, features=3, rows=200, seed=0)["input"]
    np.testing.assert_array_equal(rows, again)
