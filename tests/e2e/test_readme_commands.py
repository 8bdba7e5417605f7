"""The README's commands, run as a new user would (subprocess, real files)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def ferry(*args: str, repo: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ferry"), "--repo", str(repo), *args], input=stdin,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_demo_then_predict_from_stdin(tmp_path):
    repo = tmp_path / "repo"
    demo = ferry("demo", "--epochs", "5", "--workdir", str(tmp_path / "build"), repo=repo)
    assert demo.returncode == 0, demo.stderr
    assert "test accuracy on 360 digits: Keras" in demo.stdout
    assert "✓ training the seed network" in demo.stderr
    keras_acc, onnx_acc = (float(p.split()[-1].rstrip(",")) for p in
                           demo.stdout.split("Keras")[1].split("(")[0].split("ONNX Runtime"))
    assert keras_acc == onnx_acc and keras_acc > 0.8
    assert (tmp_path / "build" / "my_model.h5").is_file()

    sample = (ROOT / "examples" / "seed" / "sample.json").read_text()
    result = ferry("predict", "digits", repo=repo, stdin=sample)
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["model_name"] == "digits" and response["labels"] == ["0"]


def test_errors_are_one_line_without_traceback(tmp_path):
    result = ferry("show", "nope", repo=tmp_path / "repo")
    assert result.returncode == 2
    assert result.stderr.startswith("error: model 'nope' is not in repository")
    assert "Traceback" not in result.stderr


#: What `make serve` reads from the checkout: the Makefile and the sample bodies it prints.
SERVE_INPUTS = ("Makefile", "examples/seed/sample.json", "examples/seed/v2.json")
#: What `make serve` writes when run in the checkout (relative to it), by default.
SERVE_OUTPUTS = ("build/demo/my_model.h5", "model-repository")
#: Tool caches under the checkout that other runs (and the test run itself) write at any time.
CACHES = (".venv", ".mypy_cache", ".ruff_cache", ".import_linter_cache", ".pytest_cache",
          ".hypothesis")


def checkout_state(root: Path) -> dict[str, int | None]:
    """The checkout's untracked and ignored paths (`git status --ignored`; caches and
    bytecode left out), plus the mtime of what `make serve` would write in place (the demo's
    my_model.h5 and the default repository), present or not (None)."""
    excludes = [f":(exclude){cache}" for cache in CACHES] + [":(exclude,glob)**/__pycache__/**"]
    lines = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "-z", "--", ".",
         *excludes], cwd=root, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split("\0")
    state: dict[str, int | None] = {line[3:]: 0 for line in lines if line[:2] in ("??", "!!")}
    for output in SERVE_OUTPUTS:
        path = root / output
        state[output] = path.stat().st_mtime_ns if path.exists() else None
    return state


def changes(before: dict[str, int | None], after: dict[str, int | None]) -> list[str]:
    """Paths new in ``after``, or whose recorded mtime differs (a path gone is no change:
    engineers sharing a checkout tidy theirs at any time, and make serve removes nothing)."""
    return sorted(path for path, stamp in after.items()
                  if path not in before or before[path] != stamp)


def serve_checkout(tmp_path: Path) -> Path:
    """A copy of what `make serve` reads, with the test's own .venv linked in: make and the
    demo write there (build/demo/, the printed commands' relative paths), not in ROOT."""
    checkout = tmp_path / "checkout"
    for name in SERVE_INPUTS:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, checkout / name)
    (checkout / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    return checkout


def test_make_serve_builds_the_demo_serves_it_and_its_printed_commands_work(tmp_path):
    """`make serve` as the README says: demo model built, served, the printed lines work.

    It runs in a copy of the checkout (nothing is written into ROOT, checked with git status
    before and after). ``-o .venv/.installed-serve``: the environment is the one running the
    tests, already installed; make must not reinstall it (pip install -e from the copy would
    repoint the editable install) even when pyproject.toml is newer than its stamp.
    """
    from serving import free_port

    before = checkout_state(ROOT)
    checkout = serve_checkout(tmp_path)
    http_port, grpc_port = free_port(), free_port()
    process = subprocess.Popen(
        ["make", "-o", ".venv/.installed-serve", "serve", f"REPO={tmp_path / 'repo'}",
         f"HTTP_PORT={http_port}", f"GRPC_PORT={grpc_port}"], cwd=checkout,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:  # until the server says it is serving (or dies)
            lines.append(line)
            if line.startswith("ferry is serving"):
                break
        output = "".join(lines)
        assert "ferry is serving digits" in output, output
        assert "==> training the seed network" in output
        assert "installing ferry" not in output, output
        commands = [line.strip() for line in lines if line.startswith("  curl ")
                    or line.startswith("  .venv/bin/python -c")]
        assert len(commands) == 3, output
        predict, v2, grpc = (subprocess.run(c, shell=True, cwd=checkout, capture_output=True,
                                            text=True, timeout=60) for c in commands)
        for result in (predict, v2, grpc):
            assert result.returncode == 0, result.stderr
        answer = json.loads(predict.stdout)
        assert answer["model"] == "digits" and answer["labels"] == ["0"]
        scores = answer["predictions"][0]
        assert max(range(10), key=scores.__getitem__) == 0
        v2_answer = json.loads(v2.stdout)
        assert v2_answer["model_name"] == "digits"
        assert v2_answer["outputs"][0]["data"] == pytest.approx(scores, rel=1e-5)
        assert grpc.stdout.startswith("[[")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
        if process.stdout is not None:
            process.stdout.close()
    assert (checkout / "build" / "demo" / "my_model.h5").is_file()  # the demo wrote here
    assert (tmp_path / "repo" / "digits" / "1" / "manifest.json").is_file()
    changed = changes(before, checkout_state(ROOT))
    assert not changed, f"make serve wrote into the checkout: {changed}"
