"""ONNX models: checked, kept as they are, and run by ONNX Runtime.

Safety: a model may keep tensors in external data files. Their paths come from the file,
so they are checked before anything reads them: relative, inside the model's folder, no
links out of it, and within the file's size. Then the ONNX checker (with strict shape
inference) must accept the model.

Parity: the artifact is the source, so ONNX Runtime is compared with the ONNX
specification's own reference evaluator (``onnx.reference``) where that can run the model.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ferry.errors import ArtifactError, UntrustedArtifactError
from ferry.formats.base import Converted, Importer, ImportOptions, ReferenceUnavailableError
from ferry.formats.detect import read_head
from ferry.runtimes import Arrays
from ferry.signature import Signature, TensorSpec, datatype_of

__all__ = ["OnnxImporter", "onnx_signature", "write_checked_onnx"]

ARTIFACT = "model.onnx"
_REFERENCE_LIMIT = 64 << 20  # the numpy evaluator is slow: only for models up to 64 MiB


class OnnxImporter(Importer):
    """``.onnx`` files, with external data kept inside the model's folder."""

    format: ClassVar[str] = "onnx"
    description: ClassVar[str] = "ONNX model (.onnx), external data inside its folder"
    converter: ClassVar[str] = "none: served as is after the ONNX checker"
    requires: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime")

    def sniff(self, path: Path) -> bool:
        """ModelProto starts with field 1 (ir_version), a small varint: bytes 08 01..20."""
        head = read_head(path, 2)
        return len(head) == 2 and head[0] == 0x08 and 1 <= head[1] <= 20

    def convert(self, source: Path, workdir: Path, options: ImportOptions) -> Converted:
        """Copy the model and its external data, check them, and read the signature."""
        model = _load_proto(source)
        for location in _external_locations(model, source):
            target = workdir / location
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.parent / location, target)
        shutil.copyfile(source, workdir / ARTIFACT)
        write_checked_onnx(workdir / ARTIFACT)
        signature = onnx_signature(model)
        reference, notes = _reference(workdir / ARTIFACT)
        import onnx

        return Converted(
            artifact=ARTIFACT,
            signature=signature,
            converter=None,
            framework=f"onnx {onnx.__version__} (opset {_opset(model)})",
            reference=reference,
            reference_name="onnx.reference evaluator",
            tolerance=1e-3,
            rtol=1e-3,
            notes=notes,
        )


def _load_proto(source: Path) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(source), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ArtifactError(
            f"{source.name} is not a readable ONNX model: {exc or type(exc).__name__}",
            hint="the file may be truncated or corrupted; export it again",
        ) from None
    if not model.graph.node and not model.graph.output:
        raise ArtifactError(f"{source.name} holds no ONNX graph (truncated or not ONNX)")
    return model


def write_checked_onnx(path: Path) -> None:
    """Run the ONNX checker with strict shape inference on a model file (and its data).

    Raises:
        ArtifactError: the checker or shape inference refuses the model.
    """
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(
            f"the ONNX checker refuses the model: {first}",
            hint="fix the exporter's output, or re-export with a supported opset",
        ) from None


def _external_locations(model: Any, source: Path) -> list[str]:
    """Check every external-data reference and return the relative paths it uses."""
    folder = source.parent.resolve()
    locations: list[str] = []
    for tensor in _all_tensors(model.graph):
        info = {e.key: e.value for e in tensor.external_data}
        if tensor.data_location != 1 and "location" not in info:  # 1 = EXTERNAL
            continue
        location = info.get("location", "")
        _check_location(tensor.name, location, folder, source.name)
        data_file = folder / location
        end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        if end > data_file.stat().st_size:
            raise ArtifactError(
                f"tensor {tensor.name!r}: external data in {location!r} ends at byte {end}, "
                f"but the file has {data_file.stat().st_size} bytes (truncated?)"
            )
        if location not in locations:
            locations.append(location)
    return locations


def _check_location(tensor: str, location: str, folder: Path, model_name: str) -> None:
    path = Path(location)
    outside = (
        not location or path.is_absolute() or ".." in path.parts
        or not (folder / path).resolve().is_relative_to(folder)
    )
    if outside:
        raise UntrustedArtifactError(
            f"tensor {tensor!r} keeps its data in {location!r}, outside the folder of "
            f"{model_name}; external data must stay inside the model's folder",
            hint="re-save the model with onnx.save(..., save_as_external_data=True, "
            "location='weights.bin') so the data sits beside it",
        )
    if (folder / path).is_symlink() or not (folder / path).is_file():
        raise ArtifactError(
            f"tensor {tensor!r}: external data file {location!r} is missing or not a "
            "regular file"
        )


def _all_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def onnx_signature(model: Any) -> Signature:
    """Read the signature from a ModelProto's graph inputs (not initializers) and outputs.

    Raises:
        ArtifactError: an input or output is not a tensor (a sequence or map, say).
    """
    initializers = {t.name for t in model.graph.initializer}
    inputs = [_spec(v) for v in model.graph.input if v.name not in initializers]
    outputs = [_spec(v) for v in model.graph.output]
    return Signature(inputs=tuple(inputs), outputs=tuple(outputs))


def _spec(value: Any) -> TensorSpec:
    from onnx import helper

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ArtifactError(
            f"graph value {value.name!r} is a {kind or 'untyped value'}, not a tensor; "
            "ferry serves tensor inputs and outputs only"
        )
    tensor = value.type.tensor_type
    try:
        datatype = datatype_of(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    except Exception:  # KeyError for ONNX types numpy lacks (bfloat16, float8, ...)
        raise ArtifactError(
            f"tensor {value.name!r} has ONNX element type {tensor.elem_type}, which the "
            "Open Inference Protocol cannot carry"
        ) from None
    dims = tuple(
        d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim
    ) if tensor.HasField("shape") else ()
    return TensorSpec(name=value.name, datatype=datatype, shape=dims)


def _opset(model: Any) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def _reference(path: Path) -> tuple[Any, list[str]]:
    """The ONNX reference evaluator as the parity reference, where it can run the model."""
    if path.stat().st_size > _REFERENCE_LIMIT:
        return None, ["parity: model too large for the reference evaluator; ran ONNX Runtime only"]

    def run(samples: Arrays) -> Arrays:
        import onnx
        from onnx.reference import ReferenceEvaluator

        try:
            evaluator = ReferenceEvaluator(onnx.load(str(path)))
            names = list(evaluator.output_names)
            results = evaluator.run(None, dict(samples))
        except Exception as exc:  # unsupported operators or domains
            raise ReferenceUnavailableError(
                f"the reference evaluator cannot run it: {exc}"
            ) from None
        return dict(zip(names, results, strict=True))

    return run, []
