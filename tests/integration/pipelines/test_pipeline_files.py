"""Pipeline files (issue 19 items 1 and 7): validation at import, storage, and bad input.

Real ONNX members (small MLPs built here) in a real repository; the pipeline is stored by
``ferry import`` / ``ferry pipeline create`` and run in-process (ferry.pipelines.local) and
by the engine. The custom step comes from ``ferry-test-steps`` (tests/pipeline_steps), an
installed package whose entry point names it (``make test`` installs it).
"""

from __future__ import annotations

import asyncio
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from builders import mlp_onnx
from ferry.call import INTERNAL
from ferry.cli import main
from ferry.engine import Engine
from ferry.formats import ImportOptions, import_model
from ferry.inference import InferRequest, Tensor
from ferry.pipelines.local import load_pipeline
from ferry.repository import Repository

pytestmark = pytest.mark.timeout(120)

LABELS = ["cat", "dog", "eel"]


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def members(tmp_path) -> Repository:
    """m0, m1 (x FP32 [-1, 4] -> scores FP32 [-1, 3], labelled) and wide (6 features)."""
    repo = Repository(tmp_path / "repo")
    for seed in (0, 1):
        import_model(repo, mlp_onnx(tmp_path / f"m{seed}.onnx", seed=seed), f"m{seed}",
                     options=ImportOptions(sample_count=4, labels=LABELS))
    import_model(repo, mlp_onnx(tmp_path / "wide.onnx", features=6), "wide",
                 options=ImportOptions(sample_count=4))
    return repo


def _write(tmp_path: Path, text: str, name: str = "pipeline.toml") -> Path:
    path = tmp_path / name
    path.write_text('kind = "pipeline"\n' + text)
    return path


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


GOOD = """
description = "two classifiers averaged, a custom clip, top-2 labels"
[steps.a]
model = "m0"
inputs = "inputs.x"
[steps.b]
model = "m1:1"
inputs = { x = "inputs.x" }
[steps.pa]
transform = "softmax"
inputs = "a.scores"
[steps.pb]
transform = "softmax"
inputs = "b.scores"
[steps.avg]
transform = "weighted_average"
weights = [3, 1]
inputs = ["pa.output", "pb.output"]
[steps.clip]
python = "clip_scores"
low = 0.1
inputs = { scores = "avg.output" }
[steps.top]
transform = "top_k"
k = 2
labels = ["cat", "dog", "eel"]
inputs = "clip.clipped"
[outputs]
scores = "clip.clipped"
top = "top.labels"
best = "top.scores"
"""


def _by_hand(repo: Repository, x: np.ndarray) -> dict[str, np.ndarray]:
    """The same pipeline, one step at a time: each member on ONNX Runtime, numpy between."""
    import onnxruntime as ort

    def run(name):
        stored = repo.open(name)
        session = ort.InferenceSession(str(stored.artifact_path))
        return session.run(None, {"x": x})[0]

    avg = (_softmax(run("m0")) * 3 + _softmax(run("m1:1"))) / 4
    clipped = np.clip(avg, 0.1, 1.0)
    clipped = clipped / clipped.sum(axis=-1, keepdims=True)
    order = np.argsort(-clipped, axis=-1, kind="stable")[:, :2]
    return {"scores": clipped, "best": np.take_along_axis(clipped, order, axis=-1),
            "top": np.array(LABELS, dtype=object)[order]}


def test_custom_step_comes_from_an_installed_package():
    (entry,) = [ep for ep in metadata.entry_points(group="ferry.pipeline_steps")
                if ep.name == "clip_scores"]
    assert entry.dist is not None and entry.dist.name == "ferry-test-steps"


def test_import_detects_a_pipeline_and_show_gives_its_signature(capsys, tmp_path, members):
    path = _write(tmp_path, GOOD)
    root = str(members.root)
    code, out, err = _run(capsys, "--repo", root, "import", str(path), "--name", "avg2")
    assert code == 0, err
    assert "stored pipeline avg2:1 (7 steps)" in out
    assert "x FP32 with shape [-1, 4]" in out and "top BYTES with shape [-1, 2]" in out

    code, out, err = _run(capsys, "--repo", root, "show", "avg2")
    assert code == 0, err
    assert "pipeline -> pipeline (ferry_pipeline)" in out
    assert "step a: model m0, follows the latest version (1 at import)" in out
    assert "step b: model m1, pinned to version 1" in out
    assert "step clip: python clip_scores" in out
    rows = {line.split()[1]: line.split() for line in out.splitlines()
            if line.split()[:1] in (["input"], ["output"])}
    assert rows["x"][2:] == ["FP32", "[-1,", "4]"]
    assert rows["scores"][2:] == ["FP32", "[-1,", "3]"]
    assert rows["top"][2:] == ["BYTES", "[-1,", "2]"]

    manifest = members.open("avg2:1").manifest  # hash-checked like any version
    assert manifest.kind == "pipeline" and manifest.artifact == "pipeline.toml"
    assert (members.root / "avg2" / "1" / "pipeline.toml").read_bytes() == path.read_bytes()
    assert json.loads(manifest.to_json())["kind"] == "pipeline"
    plain = members.manifest("m0")
    assert plain.kind == "model" and "kind" not in json.loads(plain.to_json())


def test_answers_like_the_steps_by_hand_in_process_and_served(tmp_path, members):
    from ferry.pipelines import create_pipeline

    create_pipeline(members, _write(tmp_path, GOOD), "avg2")
    x = np.random.default_rng(7).standard_normal((9, 4)).astype(np.float32)
    want = _by_hand(members, x)

    with load_pipeline(members, members.open("avg2")) as runtime:
        got = runtime.predict({"x": x})
    np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got["best"], want["best"], rtol=1e-6, atol=1e-7)
    assert [[v.decode() for v in row] for row in got["top"]] == want["top"].tolist()

    async def served():
        engine = Engine(members, models=["avg2"])
        await engine.start()
        try:
            assert engine.served_models() == ["avg2", "m0", "m1"]  # members loaded with it
            response = await engine.infer(INTERNAL, InferRequest(
                "avg2", [Tensor("x", "FP32", x.shape, x)]))
            text = engine.metrics.render()[0].decode()
            return {t.name: t.data for t in response.outputs}, text
        finally:
            await engine.stop()

    answer, metrics = asyncio.run(served())
    np.testing.assert_allclose(answer["scores"], want["scores"], rtol=1e-6, atol=1e-7)
    assert [[v.decode() for v in row] for row in answer["top"]] == want["top"].tolist()
    loaded = [line for line in metrics.splitlines()
              if line.startswith('ferry_model_load_seconds{model="avg2",version="1"}')]
    assert len(loaded) == 1 and float(loaded[0].split()[-1]) > 0
    for step in ("a", "b", "avg", "clip", "top"):
        assert f'ferry_stage_duration_seconds_count{{model="avg2",stage="step:{step}"}} 1.0' \
            in metrics


def test_an_error_at_run_time_names_the_step(tmp_path, members):
    """A member swapped for one that no longer fits, then unloaded: each error names its step."""
    from ferry.errors import InputError, UnavailableError
    from ferry.pipelines import create_pipeline

    create_pipeline(members, _write(tmp_path, """
[steps.a]
model = "m0"
inputs = "inputs.x"
[steps.sel]
transform = "select"
columns = [0, 2]
inputs = "a.scores"
[outputs]
out = "sel.output"
"""), "sel")
    x = np.ones((2, 4), np.float32)
    request = InferRequest("sel", [Tensor("x", "FP32", x.shape, x)])

    async def scenario():
        engine = Engine(members, models=["sel"])
        await engine.start()
        try:
            ok = await engine.infer(INTERNAL, request)
            assert ok.outputs[0].data.shape == (2, 2)
            import_model(members, mlp_onnx(tmp_path / "m0v2.onnx", features=6), "m0",
                         options=ImportOptions(sample_count=4))
            await engine.load_model(INTERNAL, "m0")  # the member now takes 6 features
            with pytest.raises(InputError) as changed:
                await engine.infer(INTERNAL, request)
            await engine.unload_model(INTERNAL, "m0")
            with pytest.raises(UnavailableError) as gone:
                await engine.infer(INTERNAL, request)
            return str(changed.value), str(gone.value)
        finally:
            await engine.stop()

    changed, gone = asyncio.run(scenario())
    assert changed.startswith("pipeline step 'a' (model m0): input 'x': expected FP32 with "
                              "shape [-1, 6], got shape [2, 4]"), changed
    assert gone == "pipeline step 'a' (model m0): its model m0 is not served now", gone


# ------------------------------------------------------------------ bad input (item 7)

BAD = {
    "cycle": ("""
[steps.a]
transform = "softmax"
inputs = "c.output"
[steps.b]
transform = "softmax"
inputs = "a.output"
[steps.c]
transform = "average"
inputs = ["b.output", "inputs.x"]
[outputs]
y = "c.output"
""", "cycle: a -> c -> b -> a"),
    "missing-step": ("""
[steps.a]
model = "nosuch"
inputs = "inputs.x"
[outputs]
y = "a.scores"
""", "step 'a' (model nosuch): model 'nosuch' is not in repository"),
    "missing-source": ("""
[steps.a]
model = "m0"
inputs = "inputs.x"
[outputs]
y = "b.scores"
""", "output 'y': source 'b.scores' names no step"),
    "mismatched-shape": ("""
[steps.a]
model = "m0"
inputs = "inputs.x"
[steps.w]
model = "wide"
inputs = "a.scores"
[outputs]
y = "w.scores"
""", "step 'w' (model wide): input 'x' expects FP32 with shape [-1, 6], but 'a.scores' "
     "gives FP32 with shape [-1, 3]"),
    "mismatched-datatype": ("""
[steps.a]
model = "m0"
inputs = "inputs.x"
[steps.i]
transform = "argmax"
inputs = "a.scores"
[steps.b]
model = "m1"
inputs = "i.index"
[outputs]
y = "b.scores"
""", "step 'b' (model m1): input 'x' expects FP32 with shape [-1, 4], but 'i.index' gives "
     "INT64 with shape [-1]"),
    "unknown-transform": ("""
[steps.a]
model = "m0"
inputs = "inputs.x"
[steps.s]
transform = "sofmax"
inputs = "a.scores"
[outputs]
y = "s.output"
""", "step 's' (transform sofmax): unknown transform 'sofmax' (transforms: argmax, average,"),
    "unknown-custom-step": ("""
[steps.a]
model = "m0"
inputs = "inputs.x"
[steps.s]
python = "no_such_step"
inputs = { scores = "a.scores" }
[outputs]
y = "s.out"
""", "no installed package provides the custom step 'no_such_step'"),
    "labels-differ": ("""
[steps.a]
model = "m0"
inputs = "inputs.x"
[steps.w]
model = "wide"
inputs = "inputs.z"
[steps.avg]
transform = "average"
inputs = ["a.scores", "w.scores"]
[outputs]
y = "avg.output"
""", "do not share a label set"),
    "not-toml": ("steps = [", "not a valid TOML file"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_pipeline_one_line_error_nothing_written(capsys, tmp_path, members, case):
    text, expected = BAD[case]
    if case == "labels-differ":
        # wide gets labels that differ from m0's: same class count, other names
        import_model(members, mlp_onnx(tmp_path / "w3.onnx", seed=3), "wide",
                     options=ImportOptions(sample_count=4, labels=["ant", "bee", "cow"]))
        text = text.replace('inputs = "inputs.z"', 'inputs = "inputs.x"')
    before = sorted(p.relative_to(members.root) for p in members.root.rglob("*")
                    if ".locks" not in p.parts)
    path = _write(tmp_path, text)
    for command in (["import", str(path)], ["pipeline", "create", str(path)]):
        code, out, err = _run(capsys, "--repo", str(members.root), *command, "--name", "bad")
        assert code != 0 and code != 1, (code, err)
        assert out == ""
        _one_line(err)
        assert expected in err.splitlines()[0], err
        assert "Traceback" not in err
    after = sorted(p.relative_to(members.root) for p in members.root.rglob("*")
                   if ".locks" not in p.parts and ".staging" not in p.parts)
    assert after == [p for p in before if ".staging" not in p.parts]
    assert members.versions("bad") == []


def _one_line(err: str) -> None:
    """One error line (and at most a hint line), no traceback."""
    lines = err.splitlines()
    assert lines[0].startswith("error: "), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), err


def _nest(tmp_path: Path, repo: Repository, depth: int) -> None:
    """p1 runs m0; p2 runs p1; ... pN runs pN-1 (N = depth)."""
    from ferry.pipelines import create_pipeline

    inner = "m0"
    for level in range(1, depth + 1):
        out = "scores" if inner == "m0" else "y"
        create_pipeline(repo, _write(tmp_path, f"""
[steps.inner]
model = "{inner}"
inputs = "inputs.x"
[outputs]
y = "inner.{out}"
""", f"p{level}.toml"), f"p{level}")
        inner = f"p{level}"


def test_nesting_deeper_than_the_limit_is_refused(capsys, tmp_path, members):
    from ferry.pipelines import MAX_DEPTH

    _nest(tmp_path, members, MAX_DEPTH)  # p3 nests 3 deep: allowed
    x = np.ones((2, 4), np.float32)
    with load_pipeline(members, members.open(f"p{MAX_DEPTH}")) as runtime, \
            load_pipeline(members, members.open("p1")) as one:
        np.testing.assert_allclose(runtime.predict({"x": x})["y"], one.predict({"x": x})["y"])
    path = _write(tmp_path, f"""
[steps.inner]
model = "p{MAX_DEPTH}"
inputs = "inputs.x"
[outputs]
y = "inner.y"
""")
    code, _, err = _run(capsys, "--repo", str(members.root), "pipeline", "create", str(path),
                        "--name", "too-deep")
    assert code == 2, err
    _one_line(err)
    assert f"pipelines nest {MAX_DEPTH + 1} deep (step 'inner' is pipeline p{MAX_DEPTH}:1, " \
           f"itself {MAX_DEPTH} deep); the limit is {MAX_DEPTH}" in err
    assert members.versions("too-deep") == []


def test_ferry_predict_runs_a_pipeline_locally(capsys, tmp_path, members):
    from ferry.pipelines import create_pipeline

    create_pipeline(members, _write(tmp_path, GOOD), "avg2")
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    (tmp_path / "x.json").write_text(json.dumps({"inputs": {"x": x.tolist()}}))
    code, out, err = _run(capsys, "--repo", str(members.root), "predict", "avg2", "--input",
                          str(tmp_path / "x.json"))
    assert code == 0, err
    answer = {o["name"]: o for o in json.loads(out)["outputs"]}
    want = _by_hand(members, x)
    assert answer["scores"]["shape"] == [2, 3] and answer["top"]["shape"] == [2, 2]
    np.testing.assert_allclose(answer["scores"]["data"], want["scores"].ravel(), rtol=1e-5)
    assert answer["top"]["data"] == want["top"].ravel().tolist()


def test_a_loop_of_pipelines_through_their_latest_versions_is_refused_when_served(tmp_path,
                                                                                   members):
    """q:1 runs m0; p runs q (latest); q:2 runs p (latest): p -> q:2 -> p -> ... never ends."""
    from ferry.errors import ArtifactError
    from ferry.pipelines import create_pipeline

    def over(member: str, output: str, name: str) -> None:
        create_pipeline(members, _write(tmp_path, f"""
[steps.inner]
model = "{member}"
inputs = "inputs.x"
[outputs]
y = "inner.{output}"
""", f"{name}.toml"), name)

    over("m0", "scores", "q")
    over("q", "y", "p")
    over("p", "y", "q")  # allowed when made: p then ran q:1
    assert members.versions("q") == [1, 2]

    async def start():
        engine = Engine(members, models=["p"])
        try:
            await asyncio.wait_for(engine.start(), 60)
        finally:
            await engine.stop()

    with pytest.raises(ArtifactError, match="pipelines nest [0-9]+ deep .* the limit is 3"):
        asyncio.run(start())
    with pytest.raises(ArtifactError, match="the limit is 3"):
        load_pipeline(members, members.open("p"))


def test_pipeline_commands_are_listed(capsys):
    code, out, _ = _run(capsys, "--help")
    assert code == 0 and "pipeline" in out
    code, out, err = _run(capsys, "pipeline", "transforms")
    assert code == 0
    assert out.split() == sorted(["softmax", "argmax", "top_k", "scale", "normalize", "cast",
                                  "select", "concatenate", "average", "weighted_average",
                                  "vote"])
    assert "Pipelines and ensembles" in err
