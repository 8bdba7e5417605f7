"""The pipeline file: a small TOML document naming steps and wiring outputs to inputs.

::

    kind = "pipeline"                 # marks the file (ferry import detects it by this line)
    description = "scaler, network, top-3 labels"

    [inputs.x]                        # optional when a model step takes the input: its spec
    datatype = "FP32"
    shape = [-1, 64]

    [steps.scale]
    model = "scaler"                  # a model of the repository: its latest, or "scaler:2"
    inputs = "inputs.x"               # one input: a source; several: { member_input = source }

    [steps.net]
    model = "digits:1"
    inputs = "scale.variable"         # a source is STEP.OUTPUT ("inputs.NAME": the pipeline's)

    [steps.top]
    transform = "top_k"               # a built-in transform (ferry.pipelines.transforms)
    k = 3                             # the transform's options sit beside it
    inputs = "net.dense_1"

    [steps.mine]
    python = "my_step"                # a custom step: an entry point of group ferry.pipeline_steps
    inputs = { a = "inputs.x" }

    [outputs]                         # the pipeline's outputs: name = source
    label = "top.labels"

Parsing checks only the file's own structure; :mod:`ferry.pipelines.graph` checks it against
the repository (steps exist, datatypes and shapes fit, no cycles).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry.errors import ArtifactError
from ferry.signature import DATATYPES, TensorSpec

__all__ = [
    "INPUTS",
    "KIND",
    "PipelineSpec",
    "Source",
    "StepSpec",
    "looks_like_pipeline",
    "parse_pipeline",
    "read_pipeline",
]

#: The value of the file's ``kind`` key.
KIND = "pipeline"
#: The pseudo-step whose outputs are the pipeline's inputs: ``inputs.x``.
INPUTS = "inputs"
#: The most bytes a pipeline file may have (it names steps; it holds no data).
MAX_FILE_BYTES = 256 * 1024

_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_KINDS = ("model", "transform", "python")
_KIND_LINE = re.compile(rb'^\s*kind\s*=\s*["\']pipeline["\']\s*(#.*)?$', re.MULTILINE)


@dataclass(frozen=True)
class Source:
    """Where a value comes from: ``step`` (or :data:`INPUTS`) and its output's name."""

    step: str
    output: str

    def __str__(self) -> str:
        return f"{self.step}.{self.output}"


@dataclass(frozen=True)
class StepSpec:
    """One step as the file declares it.

    ``kind`` is ``model`` (``target``: a model reference), ``transform`` (a built-in
    transform's name) or ``python`` (an entry point's name). ``inputs`` are ``(slot,
    source)`` pairs: ``slot`` is the member's input name for a named wiring, its position
    for a list, and None for the one-source shorthand.
    """

    id: str
    kind: str
    target: str
    inputs: tuple[tuple[str | int | None, Source], ...]
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """``step 'net' (model digits:1)`` for messages."""
        return f"step {self.id!r} ({self.kind} {self.target})"


@dataclass(frozen=True)
class PipelineSpec:
    """A parsed pipeline file."""

    steps: dict[str, StepSpec]
    outputs: dict[str, Source]
    inputs: dict[str, TensorSpec | None]
    description: str = ""

    def members(self) -> list[str]:
        """The model references of the model steps, in file order."""
        return [s.target for s in self.steps.values() if s.kind == "model"]


def looks_like_pipeline(head: bytes) -> bool:
    """Whether the first bytes of a file declare ``kind = "pipeline"`` on a line of their own."""
    return bool(_KIND_LINE.search(head))


def read_pipeline(path: Path) -> PipelineSpec:
    """Read and parse a pipeline file.

    Raises:
        ArtifactError: unreadable, too large, not TOML, or not a valid pipeline file.
    """
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ArtifactError(f"{path.name}: {size} bytes is too large for a pipeline file "
                                f"(at most {MAX_FILE_BYTES})")
        raw = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read pipeline file {path.name} ({exc.strerror})") from None
    return parse_pipeline(raw, path.name)


def parse_pipeline(raw: bytes, where: str) -> PipelineSpec:
    """Parse the bytes of a pipeline file; ``where`` names it in messages.

    Raises:
        ArtifactError: not TOML, or not a valid pipeline file (the message names the key).
    """
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ArtifactError(f"{where}: not a valid TOML file ({exc})") from None
    if data.get("kind") != KIND:
        raise ArtifactError(f"{where}: a pipeline file starts with kind = \"pipeline\" "
                            f"(got kind = {data.get('kind')!r})")
    unknown = sorted(set(data) - {"kind", "description", "inputs", "steps", "outputs"})
    if unknown:
        raise ArtifactError(f"{where}: unknown key {unknown[0]!r} (a pipeline file has kind, "
                            "description, [inputs], [steps] and [outputs])")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ArtifactError(f"{where}: description must be a string")
    steps_raw = _table(data, "steps", where)
    if not steps_raw:
        raise ArtifactError(f"{where}: no steps; declare at least one [steps.NAME] table")
    steps = {sid: _step(sid, body, where) for sid, body in steps_raw.items()}
    outputs_raw = _table(data, "outputs", where)
    if not outputs_raw:
        raise ArtifactError(f"{where}: no outputs; declare [outputs] name = \"STEP.OUTPUT\"")
    outputs = {name: _source(text, f"{where}: output {name!r}")
               for name, text in outputs_raw.items()}
    inputs = {name: _input_spec(name, body, where)
              for name, body in _table(data, "inputs", where).items()}
    return PipelineSpec(steps=steps, outputs=outputs, inputs=inputs, description=description)


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ArtifactError(f"{where}: [{key}] must be a table")
    return value


def _step(sid: str, body: Any, where: str) -> StepSpec:
    if not _STEP_ID.fullmatch(sid) or sid == INPUTS:
        raise ArtifactError(f"{where}: step name {sid!r} is not allowed (letters, digits, _ "
                            f"and -, starting with a letter or _; {INPUTS!r} is reserved)")
    if not isinstance(body, dict):
        raise ArtifactError(f"{where}: step {sid!r} must be a table")
    kinds = [k for k in _KINDS if k in body]
    if len(kinds) != 1:
        raise ArtifactError(f"{where}: step {sid!r} must name exactly one of model, transform "
                            f"or python (it names {', '.join(kinds) or 'none'})")
    kind = kinds[0]
    target = body[kind]
    if not isinstance(target, str) or not target:
        raise ArtifactError(f"{where}: step {sid!r}: {kind} must be a non-empty string")
    if "inputs" not in body:
        raise ArtifactError(f"{where}: step {sid!r} has no inputs (inputs = \"STEP.OUTPUT\")")
    wiring = body["inputs"]
    what = f"{where}: step {sid!r}"
    pairs: list[tuple[str | int | None, Source]]
    if isinstance(wiring, str):
        pairs = [(None, _source(wiring, what))]
    elif isinstance(wiring, list) and wiring:
        pairs = [(i, _source(text, what)) for i, text in enumerate(wiring)]
    elif isinstance(wiring, dict) and wiring:
        pairs = [(str(slot), _source(text, what)) for slot, text in wiring.items()]
    else:
        raise ArtifactError(f"{what}: inputs must be a source \"STEP.OUTPUT\", a list of them "
                            "or a table input = source")
    options = {k: v for k, v in body.items() if k not in (kind, "inputs")}
    if kind == "model" and options:
        raise ArtifactError(f"{what}: unknown key {sorted(options)[0]!r} (a model step has "
                            "model and inputs)")
    return StepSpec(id=sid, kind=kind, target=target, inputs=tuple(pairs), options=options)


def _source(text: Any, what: str) -> Source:
    if not isinstance(text, str):
        raise ArtifactError(f"{what}: a source must be a string \"STEP.OUTPUT\", got {text!r}")
    step, dot, output = text.partition(".")
    if not dot or not step or not output:
        raise ArtifactError(f"{what}: source {text!r} is not STEP.OUTPUT (e.g. \"net.probs\", "
                            f"or \"{INPUTS}.x\" for the pipeline's input x)")
    return Source(step, output)


def _input_spec(name: str, body: Any, where: str) -> TensorSpec | None:
    if not isinstance(body, dict):
        raise ArtifactError(f"{where}: [inputs.{name}] must be a table (datatype, shape)")
    if not body:
        return None
    datatype, shape = body.get("datatype"), body.get("shape")
    if datatype not in DATATYPES or not isinstance(shape, list) \
            or not all(isinstance(d, int) and d >= -1 for d in shape):
        raise ArtifactError(
            f"{where}: [inputs.{name}] needs datatype (one of {', '.join(DATATYPES)}) and "
            f"shape (a list of sizes, -1 for any), got {body!r:.80}")
    return TensorSpec(name=name, datatype=datatype, shape=tuple(shape))
