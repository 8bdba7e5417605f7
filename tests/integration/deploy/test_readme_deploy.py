"""The README's "From laptop to cluster" walk-through, run as far as this machine allows.

Every ``ferry`` line runs as written (a subprocess in a fresh directory, after training the
``iris.txt`` it imports); ``docker`` and ``kubectl`` lines cannot run here (no Docker
engine, no cluster), so each must be exactly a line ``ferry`` printed for the user to run;
the ``pip install`` line must name extras that exist. What was written is then checked:
the build context's Dockerfile parses and the manifests validate (issue 20 item 5).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import lightgbm as lgb
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tree_builders import dataset

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def walkthrough() -> list[str]:
    """The commands of the README's walk-through block, continuation lines joined."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From laptop to cluster", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n# from-laptop-to-cluster\n(.*?)```", section, re.S)
    assert block, "the README's walk-through block is missing"
    text = block.group(1).replace("\\\n", " ")
    return [line.split("  #", 1)[0].strip() for line in text.splitlines() if line.strip()]


@pytest.mark.timeout(300)
def test_the_readme_walkthrough_runs_as_written(tmp_path):
    commands = walkthrough()
    assert [c.split()[0] for c in commands] == [
        "pip", "ferry", "ferry", "docker", "docker", "ferry", "kubectl", "kubectl"]
    iris = dataset("iris")
    model = lgb.LGBMClassifier(n_estimators=8, max_depth=3, verbose=-1).fit(iris.x, iris.y)
    model.booster_.save_model(tmp_path / "iris.txt")
    printed: list[str] = []
    for command in commands:
        argv = shlex.split(command)
        if argv[0] == "pip":
            extras = re.search(r"\.\[([a-z,]+)\]", command).group(1).split(",")
            optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
                "optional-dependencies"]
            assert set(extras) <= set(optional), extras
            assert "requirements/constraints.txt" in command
        elif argv[0] == "ferry":
            done = subprocess.run([str(BIN / "ferry"), *argv[1:]], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=240)
            assert done.returncode == 0, f"{command}\n{done.stderr}"
            printed += done.stdout.splitlines()
        else:
            assert command in printed, f"{command!r} is not what ferry printed: {printed}"
    dockerfile = DockerfileParser(path=str(tmp_path / "build" / "image" / "Dockerfile"))
    assert dockerfile.baseimage == "python:3.11-slim"
    assert "ferry-src[serve]" in (tmp_path / "build" / "image" / "requirements.txt").read_text()
    manifests = sorted((tmp_path / "build" / "k8s").glob("*.yaml"))
    assert len(manifests) == 5
    for path in manifests:
        doc = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(doc, "1.33", strict=True)
        if doc["kind"] == "Deployment":
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            assert container["image"] == "registry.example.com/ferry-iris:1"
    assert len(list((tmp_path / "build" / "k8s" / "kserve").glob("*.yaml"))) == 2
