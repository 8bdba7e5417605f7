"""The manifest: what a stored model version is, where it came from, and how it was proven.

One JSON file, ``manifest.json``, beside the artifact in every version directory. It is
written once, when the version is committed, and never changed: versions are immutable.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferry.errors import IntegrityError
from ferry.repository.layout import MANIFEST_NAME
from ferry.signature import Signature

__all__ = [
    "MANIFEST_SCHEMA",
    "FileEntry",
    "Manifest",
    "Optimization",
    "OptimizationStep",
    "ParityReport",
    "SourceInfo",
    "now_utc",
    "parse_manifest",
    "read_manifest",
]

#: Bumped when a field changes meaning; readers refuse schemas newer than they know.
MANIFEST_SCHEMA = 1


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Strict):
    """One file of the artifact, relative to the version directory."""

    sha256: str
    size: int


class SourceInfo(_Strict):
    """The file the user imported, as it was on disk at import time."""

    filename: str = Field(description="base name of the imported file or directory")
    sha256: str = Field(description="sha256 of the file (of its file list and contents, for a dir)")
    size: int
    format: str = Field(description="source format, e.g. 'keras', 'onnx'")
    framework: str | None = Field(None, description="framework and version that loaded it")


class ParityReport(_Strict):
    """How closely the stored artifact answers like the source model."""

    method: str = Field(description="what was compared, e.g. 'onnxruntime vs keras'")
    samples: int = Field(description="number of sample rows both were run on")
    inputs: str = Field(description="where the samples came from: generated (seed) or a file")
    tolerance: float = Field(description="absolute tolerance for floating outputs")
    rtol: float = Field(0.0, description="relative tolerance: |Δ| <= tolerance + rtol·|source|")
    max_abs_diff: dict[str, float] = Field(description="per output: max |source - artifact|")
    mismatches: dict[str, int] = Field(
        default_factory=dict, description="per non-float output: elements that differ"
    )
    threshold_rows: int | None = Field(
        None, description="tree models: rows at every split threshold and its float32 "
        "neighbours, checked as well as the samples (absent before ferry recorded them)"
    )
    passed: bool


class OptimizationStep(_Strict):
    """One transform ``ferry optimize`` applied, with the settings it ran with."""

    name: str = Field(description="'prune', 'quantize' or 'fuse'")
    settings: dict[str, Any] = Field(default_factory=dict)
    summary: str = Field("", description="what the step did, in one line")


class Optimization(_Strict):
    """How an optimized version was made from its parent, and how it measured beside it."""

    steps: list[OptimizationStep]
    tools: dict[str, str] = Field(description="package -> version of the tools that ran")
    report: dict[str, Any] = Field(
        description="the measured report (ferry.optimize.report.Report, as JSON)"
    )
    forced: bool = Field(False, description="published with --force past the quality guard")


class Manifest(_Strict):
    """Everything ferry records about one model version."""

    schema_version: int = MANIFEST_SCHEMA
    name: str
    version: int
    format: str = Field(description="source format the version was imported from")
    runtime: str = Field(description="runtime that serves it: 'onnxruntime' or a native one")
    platform: str = Field(description="V2 model-metadata platform, e.g. 'onnx_onnxv1'")
    artifact: str = Field(description="main artifact file, relative to the version directory")
    signature: Signature
    files: dict[str, FileEntry] = Field(description="sha256 and size of every artifact file")
    source: SourceInfo
    converter: str | None = Field(None, description="converter and version, if converted")
    parity: ParityReport | None = None
    created: datetime
    labels: list[str] | None = Field(None, description="class labels, index = class id")
    source_names: dict[str, str] = Field(
        default_factory=dict,
        description="tensor name -> the source model's own name for it, where the tensor "
        "carries a named field of the source (a PMML OutputField such as 'probability(0)'); "
        "absent from manifests written before ferry recorded it",
    )
    notes: list[str] = Field(default_factory=list)
    kind: Literal["model", "pipeline"] = Field(
        "model", description="'pipeline' for a version whose artifact is a pipeline file "
        "running other versions (ferry.pipelines); absent from a model's manifest"
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="per-model serving settings (batching, instances)"
    )
    parent: int | None = Field(
        None, description="the version of this model it was derived from (ferry optimize); "
        "null or absent for an imported version (manifests before ferry 0.1 wrote null)"
    )
    optimization: Optimization | None = Field(
        None, description="the steps, tools and measured report of an optimized version"
    )

    def to_json(self) -> bytes:
        """Serialize with sorted keys and a trailing newline, so diffs stay readable."""
        data = self.model_dump(mode="json")
        for key in ("source_names", "parent", "optimization"):
            if not data[key]:  # imported versions: keep their manifests as they were
                del data[key]
        if data["kind"] == "model":  # only pipelines say what they are
            del data["kind"]
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def now_utc() -> datetime:
    """The current time, in UTC, to the second: the ``created`` field's clock."""
    return datetime.now(UTC).replace(microsecond=0)


def read_manifest(path: Path) -> Manifest:
    """Read and validate a manifest file.

    Raises:
        IntegrityError: the file is missing, not JSON, of a newer schema, or invalid.
    """
    where = f"{path.parent.parent.name}:{path.parent.name}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"model {where}: {path.name} is missing") from None
    return parse_manifest(raw, where)


def parse_manifest(raw: bytes, where: str) -> Manifest:
    """Validate the bytes of a manifest file; ``where`` (``name:version``) names it in errors.

    Raises:
        IntegrityError: not JSON, of a newer schema, or invalid.
    """
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"model {where}: {MANIFEST_NAME} is not valid JSON ({exc})"
                             ) from None
    schema = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(schema, int) and schema > MANIFEST_SCHEMA:
        raise IntegrityError(
            f"model {where}: manifest schema {schema} is newer than this ferry reads "
            f"({MANIFEST_SCHEMA})",
            hint="upgrade ferry",
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise IntegrityError(f"model {where}: manifest field {loc!r}: {first['msg']}") from None
