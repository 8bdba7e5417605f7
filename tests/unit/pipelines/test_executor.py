"""The pipeline graph and its executor on stand-in members (no runtime): order, wiring,
concurrency of independent steps, and errors that name their step."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ferry.errors import ArtifactError, InputError, InternalError, NotFoundError
from ferry.pipelines import Member, build_graph, parse_pipeline, run_graph, run_graph_sync
from ferry.signature import Signature, TensorSpec

SIG = Signature(inputs=(TensorSpec(name="x", datatype="FP32", shape=(-1, 2)),),
                outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1, 2)),))


def _resolve(text: str) -> Member:
    name, _, version = text.partition(":")
    if name == "missing":
        raise NotFoundError("model 'missing' is not in the repository")
    return Member(name, int(version or 1), bool(version), SIG)


TWO_BRANCHES = b"""kind = "pipeline"
[steps.left]
model = "double"
inputs = "inputs.x"
[steps.right]
model = "negate:2"
inputs = "inputs.x"
[steps.sum]
transform = "concatenate"
inputs = ["left.y", "right.y"]
[outputs]
both = "sum.output"
"""


def _graph(text: bytes = TWO_BRANCHES):
    return build_graph(parse_pipeline(text, "p.toml"), _resolve, where="p.toml")


def test_graph_levels_and_derived_signature():
    graph = _graph()
    assert [[s.id for s in level] for level in graph.levels] == [["left", "right"], ["sum"]]
    assert graph.signature.inputs == (TensorSpec(name="x", datatype="FP32", shape=(-1, 2)),)
    assert graph.signature.outputs == (TensorSpec(name="both", datatype="FP32", shape=(-1, 4)),)
    assert [(m.name, m.version, m.pinned) for m in graph.members] == [
        ("double", 1, False), ("negate", 2, True)]


def test_independent_steps_run_concurrently_and_answers_are_wired():
    graph = _graph()
    barrier = asyncio.Barrier(2)  # passes only when both branches are in flight at once
    seen = []

    async def run_step(step, arrays):
        seen.append((step.id, step.member.name, step.member.pinned))
        await barrier.wait()
        x = arrays["x"]
        return {"y": x * 2 if step.member.name == "double" else -x}

    async def main():
        x = np.array([[1.0, 2.0]], np.float32)
        return await asyncio.wait_for(run_graph(graph, {"x": x}, run_step), 10)

    times = []
    out = asyncio.run(main())
    assert out["both"].tolist() == [[2.0, 4.0, -1.0, -2.0]]
    assert sorted(seen) == [("left", "double", False), ("right", "negate", True)]
    sync = run_graph_sync(graph, {"x": np.ones((1, 2), np.float32)},
                          lambda step, arrays: {"y": arrays["x"] + 1},
                          observe=lambda sid, seconds: times.append(sid))
    assert sync["both"].tolist() == [[2.0, 2.0, 2.0, 2.0]]
    assert times == ["left", "right", "sum"]


def test_a_failing_step_is_named_and_keeps_its_kind():
    graph = _graph()

    async def run_step(step, arrays):
        if step.id == "right":
            raise InputError("input 'x': expected FP32 with shape [-1, 3]")
        return {"y": arrays["x"]}

    with pytest.raises(InputError) as caught:
        asyncio.run(run_graph(graph, {"x": np.ones((1, 2), np.float32)}, run_step))
    assert str(caught.value) == ("pipeline step 'right' (model negate:2): input 'x': "
                                 "expected FP32 with shape [-1, 3]")

    def broken(step, arrays):
        raise ZeroDivisionError("boom")

    with pytest.raises(InternalError, match="^pipeline step 'left' \\(model double\\) failed: "
                       "ZeroDivisionError: boom"):
        run_graph_sync(graph, {"x": np.ones((1, 2), np.float32)}, broken)


@pytest.mark.parametrize("text,error,message", [
    (TWO_BRANCHES.replace(b'"inputs.x"\n[steps.right]', b'"sum.output"\n[steps.right]'),
     ArtifactError, "cycle: left -> sum -> left"),
    (TWO_BRANCHES.replace(b'"negate:2"', b'"missing"'), NotFoundError,
     "step 'right' (model missing): model 'missing' is not in the repository"),
    (TWO_BRANCHES.replace(b'"left.y", ', b'"left.z", '), NotFoundError,
     "step 'sum' (transform concatenate): step 'left' has no output 'z' (there: 'y')"),
    (TWO_BRANCHES + b'[steps.extra]\ntransform = "softmax"\ninputs = "left.y"\n', ArtifactError,
     "step 'extra' (transform softmax) feeds nothing"),
    (TWO_BRANCHES.replace(b'model = "double"', b'model = "double"\nbatch = 4'), ArtifactError,
     "step 'left': unknown key 'batch'"),
    (TWO_BRANCHES.replace(b'model = "double"', b'model = "double"\ntransform = "softmax"'),
     ArtifactError, "must name exactly one of model, transform or python"),
    (TWO_BRANCHES.replace(b'inputs = "inputs.x"\n[steps.right]',
                          b'inputs = "inputs"\n[steps.right]'), ArtifactError,
     "source 'inputs' is not STEP.OUTPUT"),
    (b'kind = "model"\n', ArtifactError, "starts with kind = \"pipeline\""),
])
def test_bad_files(text, error, message):
    with pytest.raises(error) as caught:
        _graph(text)
    assert message in str(caught.value), str(caught.value)
