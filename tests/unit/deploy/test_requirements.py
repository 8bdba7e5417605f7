"""ferry.deploy.requirements: which extras an image needs, and their pins (issue 20 item 1)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from ferry.deploy.kserve import KSERVE_FORMATS
from ferry.deploy.requirements import (
    RUNTIME_EXTRAS,
    SourceTree,
    extras_for,
    find_source_tree,
    normalize,
    pinned_requirements,
    read_constraints,
)
from ferry.errors import ArtifactError, ConfigError
from ferry.formats.base import importer_names
from ferry.runtimes.registry import runtime_names


def manifest(runtime: str, name: str = "m") -> SimpleNamespace:
    return SimpleNamespace(name=name, version=1, runtime=runtime)


@pytest.mark.parametrize(("runtimes", "extras"), [
    (["onnxruntime"], ("serve",)),
    (["onnxruntime", "xgboost"], ("serve", "xgboost")),
    (["torchscript", "torch", "sklearn"], ("serve", "sklearn", "torch")),
    (["pmml", "tensorflow", "lightgbm"], ("serve", "lightgbm", "pmml", "tensorflow")),
], ids=["onnx", "booster", "torch-twice", "three"])
def test_extras_follow_the_runtimes(runtimes, extras):
    assert extras_for([manifest(r) for r in runtimes]) == extras


def test_an_unknown_runtime_or_a_pipeline_is_refused_by_name():
    with pytest.raises(ArtifactError, match="runtime 'jax', which ferry build knows no extra"):
        extras_for([manifest("jax", "spam")])
    with pytest.raises(ArtifactError, match="model flow:1 is a pipeline"):
        extras_for([manifest("pipeline", "flow")])


def test_every_runtime_and_format_ferry_has_is_mapped():
    assert set(runtime_names()) - {"pipeline"} <= set(RUNTIME_EXTRAS)
    assert set(importer_names()) - {"pipeline"} <= set(KSERVE_FORMATS)


def _tree(tmp_path: Path, constraints: str) -> SourceTree:
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "constraints.txt").write_text(constraints)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "ferry"\ndependencies = ["numpy>=2,<3"]\n'
        "[project.optional-dependencies]\n"
        'security = ["PyJWT[crypto]>=2.8,<3"]\n'
        'serve = ["ferry[security]", "uvicorn>=0.54,<0.55", "uvloop>=0.19; sys_platform != \'win32\'"]\n'
        'keras = ["tensorflow-cpu>=2.18,<3"]\ntensorflow = ["tensorflow_cpu>=2.18,<3"]\n')
    return SourceTree(tmp_path)


def test_requirements_expand_extras_and_pin_from_the_constraints(tmp_path):
    tree = _tree(tmp_path, "# pins\nnumpy==2.4.6\npyjwt==2.15.1\nuvicorn==0.54.0\n"
                 "uvloop==0.23.0  # fast loop\ntensorflow-cpu==2.20.0\n")
    assert pinned_requirements(tree, ["serve"]) == [
        "numpy==2.4.6", "pyjwt[crypto]==2.15.1", "uvicorn==0.54.0",
        "uvloop==0.23.0; sys_platform != 'win32'"]
    # One package named by two extras (spelled two ways) is pinned once.
    assert pinned_requirements(tree, ["keras", "tensorflow"]) == [
        "numpy==2.4.6", "tensorflow-cpu==2.20.0"]


def test_a_missing_pin_or_extra_is_a_config_error_naming_it(tmp_path):
    tree = _tree(tmp_path, "numpy==2.4.6\n")
    with pytest.raises(ConfigError, match="pins no version of 'PyJWT'"):
        pinned_requirements(tree, ["security"])
    with pytest.raises(ConfigError, match="ferry has no extra 'gpu'"):
        pinned_requirements(tree, ["gpu"])


def test_constraints_lines_must_be_exact_pins(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("numpy==2.4.6\nPyJWT>=2\n")
    with pytest.raises(ConfigError, match=r"c.txt:2: expected 'name==version', got 'PyJWT>=2'"):
        read_constraints(path)
    path.write_text("Foo_Bar.baz==1.0\n")
    assert read_constraints(path) == {"foo-bar-baz": ("Foo_Bar.baz", "1.0")}
    assert normalize("PyJWT") == "pyjwt"


def test_the_checkout_is_found_from_inside_it_and_its_pins_cover_serve(tmp_path):
    tree = find_source_tree()
    assert (tree.root / "src" / "ferry" / "deploy").is_dir()
    pins = pinned_requirements(tree, ["serve"])
    assert any(line.startswith("onnxruntime==") for line in pins)
    assert not any(line.lower().startswith(("torch", "xgboost", "tensorflow")) for line in pins)
    assert Path("src/ferry/deploy/templates/Dockerfile.tmpl") in tree.files()
    assert not any("__pycache__" in str(path) for path in tree.files())
    with pytest.raises(ConfigError, match="not run from one"):
        find_source_tree(tmp_path / "a" / "b.py")
