"""ferry.deploy.container: the Dockerfile per extra, without a repository (issue 20 item 1).

The versions are described by manifests only (``--mount``: nothing is copied), so each
runtime's Dockerfile can be checked without its framework.
"""

from __future__ import annotations

from pathlib import Path

from dockerfile_parse import DockerfileParser

from ferry.deploy.container import build_context, install_command
from ferry.deploy.selection import Selection
from ferry.repository import Repository
from ferry.repository.manifest import Manifest
from ferry.repository.store import StoredModel


def _selection(tmp_path: Path, *runtimes: str) -> Selection:
    versions = tuple(
        StoredModel(Manifest.model_construct(name=f"m{i}", version=i + 1, runtime=runtime,
                                             format=runtime), tmp_path / f"m{i}" / str(i + 1))
        for i, runtime in enumerate(runtimes))
    return Selection(Repository(tmp_path / "repo"), versions)


def _steps(context: Path) -> list[tuple[str, str]]:
    parser = DockerfileParser(path=str(context / "Dockerfile"))
    return [(i["instruction"], i["value"]) for i in parser.structure
            if i["instruction"] != "COMMENT"]


def test_pmml_brings_a_java_runtime_before_the_user_switch(tmp_path):
    context = build_context(_selection(tmp_path, "pmml", "onnxruntime"), tmp_path / "ctx",
                            mount=True)
    assert context.extras == ("serve", "pmml")
    steps = _steps(tmp_path / "ctx")
    apt = [i for i, (kind, value) in enumerate(steps)
           if kind == "RUN" and "apt-get install" in value]
    assert len(apt) == 1 and "default-jre-headless" in steps[apt[0]][1]
    assert "rm -rf /var/lib/apt/lists/*" in steps[apt[0]][1]
    assert apt[0] < [kind for kind, _ in steps].index("USER")
    assert "./ferry-src[serve,pmml]" in (tmp_path / "ctx" / "requirements.txt").read_text()
    config = (tmp_path / "ctx" / "ferry.toml").read_text()
    assert 'models = ["m0:1", "m1:2"]' in config


def test_an_onnx_image_installs_no_system_package(tmp_path):
    build_context(_selection(tmp_path, "onnxruntime"), tmp_path / "ctx", mount=True)
    steps = _steps(tmp_path / "ctx")
    assert not any("apt-get" in value for _, value in steps)
    (install,) = [value for kind, value in steps if kind == "RUN" and "pip install" in value]
    assert install.startswith(install_command())
    assert "pip check" in install
    assert ("ENV", "PATH=/opt/ferry/venv/bin:$PATH") in steps


def test_the_tag_and_commands_follow_the_first_model(tmp_path):
    context = build_context(_selection(tmp_path, "torch", "sklearn"), tmp_path / "ctx",
                            mount=True)
    assert context.extras == ("serve", "sklearn", "torch")
    assert context.build_command == f"docker build -t ferry-m0:1 {tmp_path / 'ctx'}"
    assert f"-v {(tmp_path / 'repo').resolve()}:/models:ro ferry-m0:1" in context.run_command
