"""``ferry build`` (issue 20 item 1): the build context, checked as Docker would read it.

No Docker engine runs here, so the Dockerfile is parsed with dockerfile-parse and its
instructions checked; the install step is proven by running the Dockerfile's own install
command into a fresh virtual environment (pip, from the context's requirements and
constraints) and serving the baked models from that environment with ``ferry serve``
(two workers, watched by ``write_watch.py``: nothing is written outside the temporary
directory, as the image's read-only root filesystem requires).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from dockerfile_parse import DockerfileParser

from ferry.deploy.container import BASE_IMAGE, UID, VENV
from ferry.deploy.requirements import normalize, read_constraints
from ferry.repository import Repository
from serving import free_port
from tree_builders import cli


def build(capsys, deploy_repo, out: Path, *args: str) -> tuple[int, str, str]:
    return cli(capsys, "--repo", deploy_repo.repo.root, "build", *args, "-o", out)


def instructions(context: Path) -> list[tuple[str, str]]:
    parser = DockerfileParser(path=str(context / "Dockerfile"))
    return [(item["instruction"], item["value"]) for item in parser.structure
            if item["instruction"] != "COMMENT"]


def test_an_onnx_model_gets_a_slim_non_root_image_with_serve_only(capsys, deploy_repo, tmp_path):
    out = tmp_path / "ctx"
    code, stdout, stderr = build(capsys, deploy_repo, out, "iris")
    assert code == 0, stderr
    parser = DockerfileParser(path=str(out / "Dockerfile"))
    assert parser.baseimage == BASE_IMAGE == "python:3.11-slim"
    steps = instructions(out)
    kinds = [kind for kind, _ in steps]
    assert kinds[0] == "FROM" and kinds.count("FROM") == 1
    # The user switch comes after every file is in place and before the server starts.
    user_at = kinds.index("USER")
    assert dict(steps)["USER"] == f"{UID}:{UID}" and UID != 0
    assert max(i for i, kind in enumerate(kinds) if kind in ("COPY", "RUN")) < user_at
    assert user_at < kinds.index("ENTRYPOINT")
    assert dict(steps)["EXPOSE"].split() == ["8000", "8001"]
    health = dict(steps)["HEALTHCHECK"]
    assert "/v2/health/live" in health and "--interval=" in health
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["ferry", "serve"]
    assert json.loads(dict(steps)["CMD"]) == ["--config", "/etc/ferry/ferry.toml"]
    assert ("COPY", "model-repository /models") in steps
    assert "groupadd" in steps[kinds.index("RUN")][1]  # the user exists before it is used
    # Only ferry[serve]: ONNX Runtime is ferry's core; nothing of a framework is asked for.
    requirements = (out / "requirements.txt").read_text()
    assert "./ferry-src[serve]\n" in requirements
    assert not re.search(r"(?im)^(xgboost|lightgbm|torch|tensorflow|scikit-learn)", requirements)
    pins = [line for line in requirements.splitlines() if line and line[0].isalpha()]
    assert pins and all("==" in line for line in pins)
    assert "onnxruntime==" in requirements
    # The versions are hash-checked copies, readable by the image's user.
    baked = Repository(out / "model-repository").open("iris:1")
    assert baked.manifest == deploy_repo.repo.manifest("iris")
    assert (out / ".dockerignore").read_text().count("__pycache__") == 1
    assert not list((out / "ferry-src").rglob("__pycache__"))
    assert stdout.splitlines() == [
        f"docker build -t ferry-iris:1 {out}",
        "docker run --rm --read-only --tmpfs /tmp -p 8000:8000 -p 8001:8001 ferry-iris:1",
    ]
    assert "ferry[serve]" in stderr


def test_a_native_booster_adds_its_extra_and_mount_leaves_the_models_out(
        capsys, deploy_repo, tmp_path):
    out = tmp_path / "ctx"
    code, stdout, stderr = build(capsys, deploy_repo, out, "iris", "wine:1", "--mount",
                                 "--tag", "registry.local/ferry:7")
    assert code == 0, stderr
    assert "./ferry-src[serve,xgboost]\n" in (out / "requirements.txt").read_text()
    assert re.search(r"(?m)^xgboost-cpu==", (out / "requirements.txt").read_text())
    steps = instructions(out)
    assert ("VOLUME", "/models") in steps
    assert not any(kind == "COPY" and "model-repository" in value for kind, value in steps)
    assert not (out / "model-repository").exists()
    config = (out / "ferry.toml").read_text()
    assert 'models = ["iris:1", "wine:1"]' in config and 'repository = "/models"' in config
    assert f"-v {deploy_repo.repo.root.resolve()}:/models:ro registry.local/ferry:7" in stdout


@pytest.mark.parametrize(("args", "phrase"), [
    (["nope"], "model 'nope' is not in repository"),
    (["iris:9"], "model 'iris' has no version 9"),
    (["iris", "iris:1"], "model 'iris' is named twice"),
], ids=["unknown-model", "unknown-version", "twice"])
def test_a_bad_model_reference_is_one_line_naming_it(capsys, deploy_repo, tmp_path, args, phrase):
    code, _, stderr = build(capsys, deploy_repo, tmp_path / "ctx", *args)
    assert code == 2 and phrase in stderr and "Traceback" not in stderr
    assert not (tmp_path / "ctx").exists()


def test_a_non_empty_output_directory_is_refused(capsys, deploy_repo, tmp_path):
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "keep.txt").write_text("mine")
    code, _, stderr = build(capsys, deploy_repo, tmp_path / "ctx", "iris")
    assert code == 2 and "not empty" in stderr
    assert [p.name for p in (tmp_path / "ctx").iterdir()] == ["keep.txt"]


def _install_step(context: Path, venv: Path) -> str:
    """The Dockerfile's pip install RUN step, pointed at ``venv`` instead of the image's."""
    runs = [value for kind, value in instructions(context) if kind == "RUN"]
    step = next(value for value in runs if "pip install" in value)
    # The step also removes ferry-src (the image does not keep it); the test does the same.
    return step.replace(VENV, str(venv)).replace("python -m venv", f"{sys.executable} -m venv")


@pytest.mark.timeout(900)
def test_the_context_installs_into_a_fresh_venv_and_serves_its_baked_models(
        capsys, deploy_repo, tmp_path):
    """The slow one: pip installs the context (registry or pip's cache), then serves it."""
    out = tmp_path / "ctx"
    assert build(capsys, deploy_repo, out, "iris")[0] == 0
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    step = _install_step(out, venv)
    done = subprocess.run(["bash", "-c", step], cwd=out, env=env, capture_output=True,
                          text=True, timeout=840)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (out / "ferry-src").exists()
    # Every installed package is pinned, at the constraints' version; no framework came in.
    pins = read_constraints(out / "constraints.txt")
    frozen = subprocess.run([venv / "bin" / "pip", "freeze"], capture_output=True, text=True,
                            check=True, env=env).stdout.splitlines()
    installed = dict(line.split("==", 1) for line in frozen if "==" in line)
    assert installed and "ferry" not in {normalize(n) for n in installed}
    for name, version in installed.items():
        assert pins[normalize(name)][1] == version, f"{name}=={version} is not pinned"
    assert not {"xgboost-cpu", "lightgbm", "torch", "scikit-learn", "tensorflow-cpu"} & {
        normalize(n) for n in installed}
    # The watcher sees a write outside the temporary directory (a control for the check
    # below): ferry keys add writes its keys file where it is told.
    watch, writes = Path(__file__).with_name("write_watch.py"), tmp_path / "writes.txt"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    subprocess.run([venv / "bin" / "python", watch, writes, "keys", "add", "ci", "--grant",
                    "infer:*", "--keys-file", tmp_path / "keys.json"], env=env, check=True,
                   capture_output=True)
    assert f"open {tmp_path / 'keys.json'}" in writes.read_text()
    writes.unlink()
    # Serve the context's models with the context's settings, from that environment only,
    # with two workers; as in the image (read-only root, a writable /tmp), nothing may be
    # written outside the temporary directory.
    http, grpc = free_port(), free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [venv / "bin" / "python", watch, writes, "serve", out / "model-repository",
         "--config", out / "ferry.toml", "--host", "127.0.0.1", "--http-port", str(http),
         "--grpc-port", str(grpc), "--workers", "2"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{http}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        rows = deploy_repo.x[:12]
        answer = httpx.post(f"{url}/v2/models/iris/infer", timeout=30, json={"inputs": [{
            "name": "input", "datatype": "FP32", "shape": list(rows.shape),
            "data": rows.ravel().tolist()}]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_name"] == "iris" and body["model_version"] == "1"
        label = next(o for o in body["outputs"] if o["name"] == "label")
        np.testing.assert_array_equal(np.asarray(label["data"]), deploy_repo.labels[:12])
        listed = httpx.get(f"{url}/v2/models/wine/ready", timeout=5)
        assert listed.status_code == 404  # only the chosen model is baked and served
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()
    assert server.returncode == 0, (tmp_path / "serve.log").read_text()
    assert not writes.exists() or writes.read_text() == ""
