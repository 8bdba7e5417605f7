"""``ferry optimize``, ``ferry compare`` and ``ferry show``'s lineage in-process, on a small
MLP trained here on the digits; bad input is one line, exit 2, and nothing is written; an
optimized version is served and hot-swapped to like any other."""

from __future__ import annotations

import json

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from extras import require
from ferry.cli import main
from ferry.demo import SeedData
from ferry.engine import Engine
from ferry.repository import Repository
from ferry.runtimes import load_runtime
from optimize_models import digits_784, train_digits_mlp

require("sklearn")


@pytest.fixture(scope="module")
def files(tmp_path_factory, seed_data: SeedData):
    """A 784-64-64-10 MLP trained on the 28x28 digits, its eval and calibration files."""
    folder = tmp_path_factory.mktemp("cli")
    train_digits_mlp(folder / "small.onnx", seed_data, hidden=(64, 64), epochs=30)
    np.savez(folder / "test.npz", x=digits_784(seed_data.x_test), y=seed_data.y_test)
    np.savez(folder / "calib.npz", x=digits_784(seed_data.x_train[:128]))
    relu = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    relu_model = helper.make_model(relu, opset_imports=[helper.make_opsetid("", 17)])
    relu_model.ir_version = 9
    onnx.save(relu_model, str(folder / "relu.onnx"))
    return folder


@pytest.fixture
def repo_dir(tmp_path, files, capsys):
    root = str(tmp_path / "repo")
    for source, name in (("small.onnx", "small"), ("relu.onnx", "relu")):
        assert main(["--repo", root, "import", str(files / source), "--name", name]) == 0
    capsys.readouterr()
    return root


def ferry(capsys, repo_dir, *args):
    code = main(["--repo", repo_dir, *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["optimize", "compare"])
def test_help(capsys, command):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and "Example" in out


def test_optimize_prints_the_report_and_show_gives_the_lineage(capsys, repo_dir, files):
    code, out, err = ferry(capsys, repo_dir, "optimize", "small", "--quantize", "dynamic",
                           "--eval", str(files / "test.npz"), "--threads", "1")
    assert code == 0, err
    assert "✓ quantizing (dynamic)" in err and "✓ measuring both versions" in err
    for figure in ("file size (bytes)", "parameters", "FLOPs per row", "latency p50 batch 1",
                   "latency p99 batch 32", "throughput batch 32", "top-1 agreement",
                   "accuracy", "points of accuracy"):
        assert figure in out
    assert "wrote small:2 (parent small:1)" in out
    code, out, _ = ferry(capsys, repo_dir, "optimize", "small:2", "--fuse", "--json")
    record = json.loads(out)
    assert record["version"] == 3 and record["parent"] == 2
    assert [s["name"] for s in record["steps"]] == ["fuse", "compact"]
    assert record["report"]["quality"]["max_abs_diff"] <= 1e-5

    code, out, _ = ferry(capsys, repo_dir, "show", "small:3")
    assert code == 0
    assert "lineage   small:3 (fuse) <- small:2 (quantize) <- small:1 (imported from onnx)" in out
    assert "step      fuse:" in out and "tools     numpy" in out
    code, out, _ = ferry(capsys, repo_dir, "show", "small:3", "--json")
    assert json.loads(out)["parent"] == 2
    code, out, _ = ferry(capsys, repo_dir, "show", "small:1")
    assert "lineage" not in out


def test_compare_prints_the_same_table_for_any_two_versions(capsys, repo_dir, files):
    assert ferry(capsys, repo_dir, "optimize", "small", "--quantize", "fp16")[0] == 0
    code, out, err = ferry(capsys, repo_dir, "compare", "small:1", "small:2", "--eval",
                           str(files / "test.npz"))
    assert code == 0, err
    assert "small:2 / small:1" in out and "file size (bytes)" in out and "accuracy" in out
    code, out, _ = ferry(capsys, repo_dir, "compare", "small:1", "small:2", "--json")
    report = json.loads(out)
    assert report["after"]["file_bytes"] < 0.6 * report["before"]["file_bytes"]
    assert report["quality"]["origin"].startswith("64 rows generated")
    code, _, err = ferry(capsys, repo_dir, "compare", "small:1", "relu:1")
    assert code == 2 and "different signatures" in err


def test_max_drop_refuses_and_force_publishes_and_says_so(capsys, repo_dir, files):
    args = ["optimize", "small:1", "--prune", "0.97", "--eval", str(files / "test.npz")]
    code, out, err = ferry(capsys, repo_dir, *args)
    assert code == 2
    assert "points of accuracy" in err and "more than --max-drop 1; nothing was written" in err
    assert "small:1 / refused" not in out and "refused / small:1" in out  # the figures shown
    assert "accuracy" in out and "non-zero parameters" in out
    assert Repository(repo_dir).versions("small") == [1]
    code, _, err = ferry(capsys, repo_dir, *args, "--max-drop", "100")
    assert code == 0 and "published with --force" not in err
    code, _, err = ferry(capsys, repo_dir, *args, "--force")
    assert code == 0, err
    assert "published with --force" in err and "more than --max-drop 1" in err
    manifest = Repository(repo_dir).manifest("small:3")
    assert manifest.optimization is not None and manifest.optimization.forced
    assert "(published with --force)" in ferry(capsys, repo_dir, "show", "small:3")[1]


def _bad_files(files, tmp_path):
    np.savez(tmp_path / "narrow.npz", x=np.zeros((8, 63), np.float32))
    np.save(tmp_path / "words.npy", np.array([["a"] * 784] * 2))
    (tmp_path / "empty.json").write_bytes(b"")
    np.savez(tmp_path / "norows.npz", x=np.zeros((0, 784), np.float32))
    return tmp_path


BAD = {
    "calibration shape": (["small", "--quantize", "static", "--calibration", "{t}/narrow.npz"],
                          "--calibration narrow.npz"),
    "eval datatype": (["small", "--fuse", "--eval", "{t}/words.npy"], "--eval words.npy"),
    "empty eval": (["small", "--fuse", "--eval", "{t}/empty.json"], "file is empty"),
    "eval without rows": (["small", "--fuse", "--eval", "{t}/norows.npz"], "holds no rows"),
    "missing eval": (["small", "--fuse", "--eval", "{t}/nope.npz"], "no such file"),
    "no prunable layers": (["relu", "--prune", "0.5"], "no prunable layers"),
    "no chain": (["relu", "--prune", "0.5", "--structured"], "no prunable layers"),
    "fraction above": (["small", "--prune", "1.5"], "between 0 and 1"),
    "fraction zero": (["small", "--prune", "0"], "between 0 and 1"),
    "mode the ops cannot take": (["relu", "--quantize", "dynamic"], "include none"),
    "unknown mode": (["small", "--quantize", "int4"], "choose one of dynamic, static, fp16"),
    "static without calibration": (["small", "--quantize", "static"], "needs calibration"),
    "no step": (["small"], "nothing to do"),
    "no such version": (["small:9", "--fuse"], "has no version 9"),
    "no such model": (["nosuch", "--fuse"], "is not in repository"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2_and_nothing_is_written(capsys, repo_dir, files,
                                                             tmp_path, case):
    folder = _bad_files(files, tmp_path)
    args, phrase = BAD[case]
    code, _, err = ferry(capsys, repo_dir, "optimize",
                           *[a.format(t=folder) for a in args])
    assert code == 2
    lines = [line for line in err.splitlines() if not line.startswith(("✓", "✗"))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], err
    repo = Repository(repo_dir)
    assert repo.versions("small") == [1] and repo.versions("relu") == [1]
    assert list((repo.root / ".staging").iterdir()) == []


def test_a_native_runtime_version_is_refused_with_the_reason(capsys, tmp_path):
    require("skops")
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    sio.dump(LogisticRegression(max_iter=300).fit(x, y), tmp_path / "lr.skops")
    repo_dir = str(tmp_path / "repo")
    assert main(["--repo", repo_dir, "import", str(tmp_path / "lr.skops"), "--name", "lr",
                 "--native"]) == 0
    capsys.readouterr()
    code, _, err = ferry(capsys, repo_dir, "optimize", "lr", "--quantize", "dynamic")
    assert code == 2
    assert "served by the sklearn runtime" in err and "works on versions ONNX Runtime serves" in err
    assert Repository(repo_dir).versions("lr") == [1]


async def test_an_optimized_version_is_served_and_swapped_to(tmp_path, files):
    from ferry.call import internal_call
    from ferry.optimize import OptimizeOptions, optimize_version
    from rest_server import serve

    repo = Repository(tmp_path / "repo")
    assert main(["--repo", str(repo.root), "import", str(files / "small.onnx"), "--name",
                 "small"]) == 0
    x = np.load(files / "test.npz")["x"][:4]
    body = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}
    engine = Engine(repo)
    with serve(engine, repo) as served:
        async with httpx.AsyncClient(base_url=served.url) as client:
            first = (await client.post("/v2/models/small/infer", json=body)).json()
            assert first["model_version"] == "1"
            result = optimize_version(repo, "small", OptimizeOptions(
                quantize="dynamic", eval=files / "test.npz", timing_seconds=0.05))
            served.call(engine.load_model(internal_call("test"), "small"))
            answer = (await client.post("/v2/models/small/infer", json=body)).json()
    assert answer["model_version"] == str(result.manifest.version) == "2"
    stored = repo.open("small:2")
    with load_runtime("onnxruntime", stored.artifact_path, stored.manifest.signature) as rt:
        expected = rt.predict({"x": x})["scores"]
    np.testing.assert_allclose(np.array(answer["outputs"][0]["data"]).reshape(4, 10),
                               expected, rtol=1e-5, atol=1e-5)
