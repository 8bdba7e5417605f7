"""Accuracy of a pipeline (an ensemble, say) on an eval set, beside each member model's.

The eval set is an ``.npz`` file holding one array per pipeline input (by name) and ``y``,
the true class ids. A member's prediction is the argmax of its first output (or the output
itself when it holds class ids); the pipeline's is that of its first output that holds class
scores or class ids.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import InputError
from ferry.pipelines.executor import run_graph_sync
from ferry.pipelines.graph import Graph, Step
from ferry.pipelines.local import PipelineRuntime, load_members
from ferry.repository import Repository
from ferry.runtimes import Arrays
from ferry.signature import Signature, as_array

__all__ = ["Evaluation", "evaluate", "evaluate_graph", "read_eval_set"]


@dataclass(frozen=True)
class Evaluation:
    """Accuracy (0..1) on ``rows`` rows: the pipeline's and each model step's (by step id)."""

    rows: int
    accuracy: float
    members: dict[str, tuple[str, float]]  # step id -> (member name:version, accuracy)

    def lines(self) -> list[str]:
        """One line per figure, for the CLI and the manifest's notes."""
        out = [f"accuracy {self.accuracy:.4f} on {self.rows} rows (the pipeline)"]
        out += [f"accuracy {acc:.4f} on {self.rows} rows (step {sid}: {ref})"
                for sid, (ref, acc) in self.members.items()]
        return out


def evaluate_graph(repo: Repository, graph: Graph, path: Path) -> Evaluation:
    """Load ``graph``'s members from ``repo`` and evaluate it on the eval set at ``path``."""
    inputs, y = read_eval_set(path, graph.signature)
    with load_members(repo, graph) as runtime:
        assert isinstance(runtime, PipelineRuntime)
        return evaluate(runtime, inputs, y)


def read_eval_set(path: Path, signature: Signature) -> tuple[Arrays, np.ndarray[Any, Any]]:
    """The inputs and true class ids of an eval set file.

    Raises:
        InputError: unreadable, or an input or ``y`` is missing or of the wrong type.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"eval set {path.name}: not a readable .npz file ({exc})") from None
    if "y" not in arrays:
        raise InputError(f"eval set {path.name}: no array 'y' (the true class ids)")
    y = arrays.pop("y")
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise InputError(f"eval set {path.name}: 'y' must be a 1-D array of class ids")
    inputs: Arrays = {}
    for spec in signature.inputs:
        if spec.name not in arrays:
            raise InputError(f"eval set {path.name}: no array {spec.name!r} (the pipeline's "
                             f"input, {spec.describe()})")
        inputs[spec.name] = as_array(spec, arrays[spec.name])
    signature.check_inputs(inputs)
    return inputs, y


def _classes(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    if array.dtype.kind in "iu" and array.ndim == 1:
        return array
    if array.dtype.kind == "f" and array.ndim == 2:
        classes: np.ndarray[Any, Any] = np.argmax(array, axis=-1)
        return classes
    return None


def evaluate(pipeline: PipelineRuntime, inputs: Arrays, y: np.ndarray[Any, Any]
             ) -> Evaluation:
    """Run ``pipeline`` on ``inputs`` and score it and each model step against ``y``.

    Raises:
        InputError: the pipeline gives no class scores or class ids to score.
    """
    seen: dict[str, Arrays] = {}

    def run_step(step: Step, arrays: Arrays) -> Arrays:
        out = pipeline.run_step(step, arrays)
        seen[step.id] = out
        return out

    outputs = run_graph_sync(pipeline.graph, inputs, run_step)
    predicted = next((c for c in map(_classes, outputs.values()) if c is not None), None)
    if predicted is None:
        raise InputError("the pipeline gives no class scores or class ids to score "
                         "(a 1-D integer output or a 2-D float output)")
    members: dict[str, tuple[str, float]] = {}
    for sid, step in pipeline.graph.steps.items():
        if step.member is None:
            continue
        first = seen[sid][step.member.signature.outputs[0].name]
        classes = _classes(first)
        if classes is not None:
            members[sid] = (step.member.ref, float(np.mean(classes == y)))
    return Evaluation(rows=len(y), accuracy=float(np.mean(predicted == y)), members=members)
