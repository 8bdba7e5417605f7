"""The ferry CLI in-process: verbs, output, and one-line errors with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ferry.cli import main

COMMANDS = ["import", "models", "show", "predict", "delete", "demo", "formats"]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(capsys, command):
    code, out, _ = run(capsys, *([command] if command else []), "--help")
    assert code == 0
    assert "Usage" in out and ("Example" in out or command in (None, "formats"))


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("ferry ")


def test_import_list_show_predict_delete(capsys, tmp_path, mlp_path):
    repo = str(tmp_path / "repo")
    code, out, err = run(capsys, "--repo", repo, "import", str(mlp_path), "--name", "mlp",
                         "--labels", "a,b,c")
    assert code == 0, err
    assert "imported mlp:1 (onnx -> onnxruntime)" in out
    assert "✓ checking parity with the source model" in err

    code, out, _ = run(capsys, "--repo", repo, "models", "--json")
    assert json.loads(out)[0]["versions"] == [1]

    code, out, _ = run(capsys, "--repo", repo, "show", "mlp:1", "--json")
    manifest = json.loads(out)
    assert manifest["signature"]["inputs"][0]["shape"] == [-1, 4]
    code, out, _ = run(capsys, "--repo", repo, "show", "mlp")
    assert "sha256 all match" in out and "labels    a, b, c" in out

    inputs = tmp_path / "in.json"
    inputs.write_text(json.dumps({"inputs": {"x": [[1, 2, 3, 4], [0, 0, 0, 0]]}}))
    code, out, err = run(capsys, "--repo", repo, "predict", "mlp", "--input", str(inputs))
    assert code == 0, err
    response = json.loads(out)
    assert response["model_version"] == "1"
    assert response["outputs"][0]["shape"] == [2, 3] and len(response["labels"]) == 2

    np.save(tmp_path / "in.npy", np.ones((3, 4), np.float32))
    code, out, _ = run(capsys, "--repo", repo, "predict", "mlp:1", "-i", str(tmp_path / "in.npy"))
    assert json.loads(out)["outputs"][0]["shape"] == [3, 3]

    code, _, err = run(capsys, "--repo", repo, "delete", "mlp:1", "--yes")
    assert code == 0 and "deleted mlp version(s) 1" in err
    code, out, _ = run(capsys, "--repo", repo, "models", "--json")
    assert json.loads(out) == []


def test_formats_lists_keras_and_onnx(capsys):
    code, out, _ = run(capsys, "formats")
    assert code == 0 and "keras" in out and "onnx" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "model 'nope' is not in repository"),
        (["show", "../etc"], "invalid model name '../etc'"),
        (["import", "{missing}", "--name", "x"], "does not exist"),
        (["import", "{mlp}", "--name", "a/b"], "invalid model name 'a/b'"),
        (["import", "{mlp}", "--name", "x", "--format", "keras"], "does not look like a keras model"),
        (["import", "{mlp}", "--name", "x", "--format", "caffe"], "unknown format 'caffe'"),
        (["import", "{dir}", "--name", "x"], "is a directory"),
        (["predict", "nope", "--input", "{mlp}"], "model 'nope' is not in repository"),
        (["delete", "nope", "--yes"], "model 'nope' is not in repository"),
    ],
    ids=["unknown-model", "bad-name", "missing-file", "bad-import-name", "format-mismatch",
         "unknown-format", "directory", "predict-unknown", "delete-unknown"],
)
def test_user_errors_are_one_line_with_status_2(capsys, tmp_path, mlp_path, args, message):
    subst = {"{missing}": str(tmp_path / "nope.h5"), "{mlp}": str(mlp_path), "{dir}": str(tmp_path)}
    code, out, err = run(capsys, "--repo", str(tmp_path / "repo"), *[subst.get(a, a) for a in args])
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "repo").exists() or not any(
        p.name.isdigit() for p in (tmp_path / "repo").rglob("*"))


def test_bad_predict_inputs(capsys, tmp_path, mlp_path):
    repo = str(tmp_path / "repo")
    assert run(capsys, "--repo", repo, "import", str(mlp_path), "--name", "mlp")[0] == 0
    (tmp_path / "bad.json").write_text(json.dumps({"data": [[1, 2, 3]]}))
    code, _, err = run(capsys, "--repo", repo, "predict", "mlp", "-i", str(tmp_path / "bad.json"))
    assert code == 2
    assert "input 'x': expected FP32 with shape [-1, 4], got shape [1, 3]" in err
    code, _, err = run(capsys, "--repo", repo, "predict", "mlp", "-i", str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_usage_errors_exit_2(capsys):
    code, _, err = run(capsys, "import")
    assert code == 2 and "Missing argument" in err


def test_debug_shows_the_traceback(tmp_path):
    from ferry.errors import NotFoundError

    with pytest.raises(NotFoundError):
        main(["--repo", str(tmp_path), "--debug", "show", "nope"])


def test_delete_without_yes_and_without_a_terminal(capsys, tmp_path, mlp_path, monkeypatch):
    repo = str(tmp_path / "repo")
    assert run(capsys, "--repo", repo, "import", str(mlp_path), "--name", "mlp")[0] == 0
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _, err = run(capsys, "--repo", repo, "delete", "mlp")
    assert code == 2 and "refusing to delete mlp version(s) 1 without --yes" in err
