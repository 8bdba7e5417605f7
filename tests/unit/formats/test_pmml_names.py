"""PMML output field names -> tensor names (issue 17, item 1): the one mapping the importer and
the runtime share, the reader that finds a model chain's outputs, and the manifest field that
keeps the original names (old manifests still load).
"""

from __future__ import annotations

import json
import random
import re
import string

import pytest

from ferry.repository.manifest import Manifest, parse_manifest
from ferry.runtimes.pmml import OWN_OUTPUTS, read_document, tensor_names

SINGLE = [
    ("probability(0)", "probability_0"),
    ("probability(Iris-setosa)", "probability_Iris_setosa"),
    ("probability(Iris setosa)", "probability_Iris_setosa"),
    ("decisionFunction(1)", "decisionFunction_1"),
    ("p.1", "p_1"),
    ("probability(0.5)", "probability_0_5"),
    ("predicted_target", "predicted_target"),  # already a tensor name
    ("_private", "_private"),
    ("  spaced  ", "spaced"),
    ("(1)", "field_1"),
    ("1st", "field_1st"),
    ("()", "field"),
    ("", "field"),
    ("décision", "d_cision"),  # ASCII only
    ("label", "label_2"),  # ferry's own outputs are reserved
    ("probabilities", "probabilities_2"),
    ("predictions", "predictions_2"),
]


@pytest.mark.parametrize(("field", "tensor"), SINGLE, ids=[f"{f!r}" for f, _ in SINGLE])
def test_one_field_maps_to_a_tensor_name(field, tensor):
    assert tensor_names([field]) == {field: tensor}


COLLISIONS = [
    ("parentheses-and-brackets", ["p(1)", "p[1]"], {"p(1)": "p_1", "p[1]": "p_1_2"}),
    ("valid-name-claimed-first", ["p(1)", "p[1]", "p_1"],
     {"p(1)": "p_1_2", "p[1]": "p_1_3", "p_1": "p_1"}),
    ("suffix-skips-taken-names", ["a b", "a.b", "a_b_2"],
     {"a b": "a_b", "a.b": "a_b_3", "a_b_2": "a_b_2"}),
    ("reserved-and-its-suffix", ["label", "label_2", "label()"],
     {"label": "label_3", "label_2": "label_2", "label()": "label_4"}),
    ("duplicates-once", ["p(1)", "p(1)"], {"p(1)": "p_1"}),
]


@pytest.mark.parametrize(("fields", "expected"), [c[1:] for c in COLLISIONS],
                         ids=[c[0] for c in COLLISIONS])
def test_collisions_get_a_deterministic_suffix_in_document_order(fields, expected):
    assert tensor_names(fields) == expected
    assert list(tensor_names(fields)) == list(dict.fromkeys(fields))  # the order given


def test_reserved_names_can_be_chosen():
    assert tensor_names(["probability(0)"], reserved=["probability_0"]) == {
        "probability(0)": "probability_0_2"}
    assert tensor_names(["label"], reserved=()) == {"label": "label"}


def test_every_name_is_a_unique_valid_tensor_name_and_the_mapping_is_stable():
    rng = random.Random(17)
    alphabet = string.ascii_letters[:4] + string.digits[:3] + "_ ().-[]é"
    valid = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
    for _ in range(300):
        fields = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
                  for _ in range(rng.randint(1, 8))]
        mapping = tensor_names(fields)
        assert mapping == tensor_names(list(fields))  # the same every time
        names = list(mapping.values())
        assert len(set(names)) == len(names) and not set(names) & set(OWN_OUTPUTS)
        assert all(valid.fullmatch(n) for n in names), mapping
        for field, name in mapping.items():  # a valid, unreserved name is never changed
            if valid.fullmatch(field) and field not in OWN_OUTPUTS:
                assert name == field


CHAIN = """<?xml version="1.0"?>
<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/>
<DataDictionary><DataField name="y" optype="categorical" dataType="integer"/>
<DataField name="x1" optype="continuous" dataType="float"/></DataDictionary>
<MiningModel functionName="classification">
<MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x1"/></MiningSchema>
<Segmentation multipleModelMethod="modelChain">
<Segment id="1"><True/><MiningModel functionName="regression">
 <MiningSchema><MiningField name="x1"/></MiningSchema>
 <Output><OutputField name="decisionFunction(1)" isFinalResult="false"/></Output>
</MiningModel></Segment>
<Segment id="2"><True/><RegressionModel functionName="classification">
 <MiningSchema><MiningField name="y" usageType="target"/>
 <MiningField name="decisionFunction(1)"/></MiningSchema>
 <Output><OutputField name="probability(0)" feature="probability" value="0"/>
 <OutputField name="probability(1)" feature="probability" value="1"/></Output>
</RegressionModel></Segment>
</Segmentation></MiningModel></PMML>
"""


def test_reader_finds_output_fields_in_a_model_chains_segments(tmp_path):
    """sklearn2pmml puts a chain's outputs on its last segment; the top model has none."""
    path = tmp_path / "chain.pmml"
    path.write_text(CHAIN)
    doc = read_document(path)
    assert doc.outputs == ["decisionFunction(1)", "probability(0)", "probability(1)"]
    assert doc.inputs == ["x1"] and doc.target == "y"  # segments' schemas are not the model's


def _manifest(**extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "schema_version": 1, "name": "m", "version": 1, "format": "pmml", "runtime": "pmml",
        "platform": "pmml", "artifact": "model.pmml",
        "signature": {"inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 2]}],
                      "outputs": [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]},
        "files": {}, "created": "2026-01-01T00:00:00Z",
        "source": {"filename": "m.pmml", "sha256": "0" * 64, "size": 1, "format": "pmml"},
    }
    data.update(extra)
    return data


def test_a_manifest_written_before_source_names_still_loads():
    manifest = parse_manifest(json.dumps(_manifest()).encode(), "m:1")
    assert manifest.source_names == {}
    assert b"source_names" not in manifest.to_json()  # written back as it was


def test_source_names_round_trip_through_the_manifest_file():
    names = {"probability_0": "probability(0)", "p_1_2": "p[1]"}
    manifest = Manifest.model_validate(_manifest(source_names=names))
    again = parse_manifest(manifest.to_json(), "m:1")
    assert again.source_names == names
    assert json.loads(manifest.to_json())["source_names"] == names
