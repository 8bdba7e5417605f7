"""PyTorch modules saved as a ``torch.export`` program (``.pt2``) or a TorchScript file.

Detection reads the zip directory only: a ``.pt2`` has ``archive_format`` and
``models/*.json``; TorchScript has ``constants.pkl`` and ``code/``; a plain ``torch.save``
archive has ``data.pkl`` alone. A legacy (non-zip) ``torch.save`` pickle is recognised by
torch's magic number and never unpickled. This importer is registered before the pickle
importers so that torch files are told apart precisely.

Safety: ``.pt2`` files are checked for pickled payloads before ``torch.export.load`` (see
:mod:`ferry.runtimes.torch`); TorchScript is loaded by ``torch.jit.load``; a ``torch.save``
file is only ever opened with ``weights_only=True``, which is enough to tell a bare
state_dict (refused: it has no code to run) from a pickled module (refused: unpickling it
would run code from the file).

Conversion: ``torch.onnx.export``. A ``.pt2`` is already an ExportedProgram, which is what
the dynamo exporter (``dynamo=True``, onnxscript) translates, symbolic batch dimension
included. ``torch.export`` cannot trace a ScriptModule (the dynamo path fails at its first
step), so TorchScript goes through the TorchScript exporter (``dynamo=False``) with a
dynamic batch axis; it is deprecated upstream, which is one more reason every conversion
is probed and falls back to torch itself when it fails or misses parity.
"""

from __future__ import annotations

import re
import shutil
import struct
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import numpy as np

from ferry.errors import (
    ArtifactError,
    ConversionError,
    InputError,
    UnsupportedFormatError,
    UntrustedArtifactError,
)
from ferry.formats.base import Converted, Importer, ImportOptions
from ferry.formats.conversion import ARTIFACT, Fallback, convert_or_fall_back, guarded
from ferry.formats.detect import read_head, zip_names
from ferry.runtimes import Arrays
from ferry.runtimes.torch import (
    flatten_outputs,
    import_torch,
    load_exported_program,
    load_torchscript,
    to_tensor,
)
from ferry.signature import Signature, TensorSpec, datatype_of

__all__ = ["SAVE_HINT", "TorchImporter", "archive_kind"]

#: max |Δ| accepted between the source and its ONNX conversion (float32 outputs), as Keras.
TOLERANCE = 1e-4
#: What to save instead of a state_dict or a pickled module: the exact calls.
SAVE_HINT = (
    "save the module itself: torch.export.save(torch.export.export(model.eval(), (x,), "
    "dynamic_shapes=({0: torch.export.Dim('batch')},)), 'model.pt2') with x a batch of "
    "example inputs, or torch.jit.save(torch.jit.script(model), 'model.pt')"
)
# torch.save's legacy format starts with a pickled LONG1: its magic number 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
# Members torch's zip writer puts first; it also pads the first header with an "FB" field.
_TORCH_MEMBER = re.compile(r"^[^/]+/(data/|data\.pkl|archive_format|code/|constants\.pkl|\.data/)")
_NATIVE = {  # kind -> (stored file, runtime, V2 platform)
    "export": ("model.pt2", "torch", "pytorch_torch_export"),
    "torchscript": ("model.pt", "torchscript", "pytorch_libtorch"),
}


def archive_kind(path: Path) -> str | None:
    """What kind of torch file ``path`` is, from its bytes: None if not a torch file.

    Returns one of ``export`` (.pt2), ``torchscript``, ``pickle`` (a torch.save zip),
    ``legacy`` (a non-zip torch.save pickle) or ``damaged`` (torch's zip layout with an
    unreadable directory: truncated).
    """
    head = read_head(path, 512)
    if len(head) >= 14 and head[0] == 0x80 and head[2:14] == _LEGACY_MAGIC:
        return "legacy"
    names = zip_names(path)
    if not names:
        return "damaged" if _torch_zip_header(head) else None
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1:
        return None
    prefix = tops.pop() + "/"
    inner = {n[len(prefix):] for n in names}
    if "archive_format" in inner and any(n.startswith("models/") for n in inner):
        return "export"
    if "constants.pkl" in inner and any(n.startswith("code/") for n in inner):
        return "torchscript"
    if "data.pkl" in inner:
        return "pickle"
    return None


def _torch_zip_header(head: bytes) -> bool:
    if len(head) < 30 or not head.startswith(b"PK\x03\x04"):
        return False
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    name = head[30:30 + name_len].decode("utf-8", "replace")
    extra = head[30 + name_len:30 + name_len + extra_len]
    return extra.startswith(b"FB") or bool(_TORCH_MEMBER.match(name))


@dataclass
class _Source:
    """A loaded torch model: how to call it, its signature, and how to export it."""

    kind: str
    module: Any
    signature: Signature
    example: Arrays
    export: Callable[[Path, int | None], str]
    notes: list[str] = field(default_factory=list)


class TorchImporter(Importer):
    """``torch.export`` programs (``.pt2``) and TorchScript files (``torch.jit.save``)."""

    format: ClassVar[str] = "torch"
    description: ClassVar[str] = (
        "PyTorch nn.Module: torch.export program (.pt2) or TorchScript (torch.jit.save)"
    )
    converter: ClassVar[str] = "torch.onnx.export (dynamo for .pt2, TorchScript exporter)"
    extra: ClassVar[str | None] = "torch"
    requires: ClassVar[tuple[str, ...]] = ("torch", "onnxscript")
    native_runtime: ClassVar[str | None] = "torch / torchscript"

    def sniff(self, path: Path) -> bool:
        """Any torch file, including those refused later (state_dicts, legacy pickles)."""
        return archive_kind(path) is not None

    def convert(self, source: Path, workdir: Path, options: ImportOptions) -> Converted:
        """Load safely, read the signature, convert and probe; else keep the torch file."""
        torch = import_torch()
        kind = archive_kind(source)
        if kind in ("export", "torchscript"):
            _check_crc(source)
        if kind == "export":
            loaded = _program_source(torch, source)
        elif kind == "torchscript":
            loaded = _script_source(torch, source, options)
        else:
            _refuse(torch, source, kind)
        reference = guarded(_reference(torch, loaded))
        framework = f"torch {torch.__version__}"
        file_name, runtime, platform = _NATIVE[loaded.kind]

        def export(path: Path) -> Converted:
            return Converted(
                artifact=ARTIFACT, signature=loaded.signature,
                converter=loaded.export(path, options.opset), framework=framework,
                reference=reference, reference_name=f"{framework} module",
                tolerance=TOLERANCE, notes=loaded.notes,
            )

        def store(workdir: Path, note: str) -> Converted:
            shutil.copyfile(source, workdir / file_name)
            return Converted(
                artifact=file_name, signature=loaded.signature, runtime=runtime,
                platform=platform, converter=None, framework=framework, reference=reference,
                reference_name=f"{framework} module (in memory, from the source file)",
                tolerance=1e-5, notes=[*loaded.notes, note],
            )

        fallback = Fallback(f"{runtime} ({framework})", store)
        return convert_or_fall_back(workdir, options, export, fallback)


# --------------------------------------------------------------- refusals


def _check_crc(source: Path) -> None:
    """Torch's zip reader does not check CRCs: damaged weights would load as wrong numbers."""
    try:
        with zipfile.ZipFile(source) as archive:
            bad = archive.testzip()
    except Exception as exc:  # zipfile raises BadZipFile, UnicodeDecodeError, zlib.error...
        bad = f"({type(exc).__name__}: {exc})"
    if bad is not None:
        what = bad if bad.startswith("(") else f"its member {bad!r} fails its checksum"
        raise ArtifactError(
            f"{source.name} is a corrupted torch archive: {what[:300]}",
            hint="save the model again and copy the whole file",
        )


def _refuse(torch: Any, source: Path, kind: str | None) -> NoReturn:
    """Raise the error that says why this torch file cannot be imported and what to save."""
    if kind == "legacy":
        raise UntrustedArtifactError(
            f"{source.name} is a legacy (non-zip) torch.save pickle; ferry never unpickles "
            "it, because unpickling runs code stored in the file", hint=SAVE_HINT,
        )
    if kind == "damaged":
        raise ArtifactError(
            f"{source.name} is a torch archive whose zip directory is unreadable; the file "
            "is truncated or corrupted", hint="save it again and copy the whole file",
        )
    if kind != "pickle":
        raise UnsupportedFormatError(f"{source.name} is not a torch.export or TorchScript file")
    try:
        content = torch.load(str(source), weights_only=True, map_location="cpu")
    except Exception:  # UnpicklingError: it holds Python objects beyond tensors
        raise UntrustedArtifactError(
            f"{source.name} was written by torch.save and holds Python objects (a pickled "
            "nn.Module?) that only full pickle can load, which would run code from the "
            "file; ferry reads torch.save files with weights_only=True only",
            hint=SAVE_HINT,
        ) from None
    raise ArtifactError(_torch_save_message(torch, source.name, content), hint=SAVE_HINT)


def _torch_save_message(torch: Any, filename: str, content: Any) -> str:
    def is_state_dict(obj: Any) -> bool:
        return isinstance(obj, Mapping) and bool(obj) and all(
            isinstance(v, torch.Tensor) for v in obj.values()
        )

    if is_state_dict(content):
        first = next(iter(content))
        return (
            f"{filename} holds a bare state_dict ({len(content)} tensors, e.g. {first!r}): "
            "weights without the module's code, so there is nothing to run"
        )
    if isinstance(content, Mapping):
        inner = [k for k, v in content.items() if is_state_dict(v)]
        if inner:
            return (
                f"{filename} is a training checkpoint holding a state_dict under {inner[0]!r}: "
                "weights without the module's code, so there is nothing to run"
            )
    return f"{filename} holds a {type(content).__name__} saved with torch.save, not a model"


# --------------------------------------------------------------- torch.export programs


def _program_source(torch: Any, source: Path) -> _Source:
    from torch.export.graph_signature import InputKind, OutputKind, TensorArgument

    program = load_exported_program(source)
    _, kwargs_spec = program.call_spec.in_spec.children()
    if kwargs_spec.num_leaves:
        raise ConversionError(
            f"{source.name}: the program takes keyword inputs; ferry calls models with "
            "positional tensors", hint="export with the inputs as a tuple: (x, y)",
        )
    nodes = {n.name: n for n in program.graph.nodes}
    inputs = []
    for spec in program.graph_signature.input_specs:
        if spec.kind != InputKind.USER_INPUT:
            continue
        if not isinstance(spec.arg, TensorArgument):
            raise ConversionError(
                f"{source.name}: input {spec.arg!r} is not a tensor; ferry serves tensor inputs"
            )
        inputs.append(_spec(torch, spec.arg.name, nodes[spec.arg.name].meta["val"]))
    results = [s for s in program.graph_signature.output_specs if s.kind == OutputKind.USER_OUTPUT]
    names = _output_names(len(results), [s.name for s in inputs])
    outputs: list[TensorSpec] = []
    for name, spec in zip(names, results, strict=True):
        node = nodes.get(getattr(spec.arg, "name", ""))
        if node is None or not isinstance(node.meta.get("val"), torch.Tensor):
            raise ConversionError(
                f"{source.name}: output {len(outputs)} is not a tensor; ferry serves modules "
                "that return a tensor or a tuple of tensors"
            )
        outputs.append(_spec(torch, name, node.meta["val"]))
    signature = Signature(inputs=tuple(inputs), outputs=tuple(outputs))
    example = _program_example(program, signature)
    notes = [] if signature.batch_axis else [_fixed_batch_note(signature)]

    def export(path: Path, opset: int | None) -> str:
        try:
            with warnings.catch_warnings():
                # torch's pytree warns about its own deprecated LeafSpec while copying.
                warnings.simplefilter("ignore", FutureWarning)
                onnx_program = torch.onnx.export(
                    program, dynamo=True, input_names=signature.input_names,
                    output_names=signature.output_names, opset_version=opset, verbose=False,
                )
                onnx_program.save(str(path))
        except Exception as exc:  # torch.onnx raises its own error types for every step
            raise ConversionError(f"torch.onnx.export failed: {_export_reason(exc)}") from None
        import onnxscript

        return (f"torch.onnx.export(dynamo=True) torch {torch.__version__}, "
                f"onnxscript {onnxscript.__version__}")

    return _Source("export", program.module(), signature, example, export, notes)


def _program_example(program: Any, signature: Signature) -> Arrays:
    """The example inputs saved in the archive, else random ones of the signature's shape."""
    saved = program.example_inputs
    if saved and len(saved[0]) == len(signature.inputs):
        return {s.name: t.detach().cpu().numpy() for s, t in zip(signature.inputs, saved[0],
                                                                  strict=True)}
    return _random_inputs(signature.inputs, rows=3)


def _fixed_batch_note(signature: Signature) -> str:
    shapes = ", ".join(f"{s.name!r} {list(s.shape)}" for s in signature.inputs)
    return (
        f"fixed input shapes ({shapes}): the program was exported without a dynamic batch "
        "dimension, so it serves exactly these shapes; export with dynamic_shapes=({0: "
        "torch.export.Dim('batch')},) to serve any batch size"
    )


# --------------------------------------------------------------- TorchScript


def _script_source(torch: Any, source: Path, options: ImportOptions) -> _Source:
    # Only traced modules store their inputs; asking a scripted one to restore shapes
    # makes torch print a C++ warning.
    traced = any(n.endswith("/traced_inputs.pkl") for n in zip_names(source))
    module = load_torchscript(source, restore_shapes=traced)
    arguments = module.forward.schema.arguments[1:]  # [0] is self
    for arg in arguments:
        if arg.type.kind() != "TensorType":
            raise ConversionError(
                f"{source.name}: forward takes {arg.name}: {arg.type}; ferry serves modules "
                "whose forward takes tensors only"
            )
    names = [a.name for a in arguments]
    values = list(module.graph.inputs())[1:]
    specs = [_traced_spec(torch, n, v.type()) for n, v in zip(names, values, strict=True)]
    if all(s is not None for s in specs):
        example = _random_inputs([s for s in specs if s is not None], rows=None)
    else:
        example = _given_inputs(source.name, names, options)
    batched = _varies_with_batch(torch, module, example)
    signature = _script_signature(torch, module, example, batched)
    notes = [] if batched else [_fixed_batch_note(signature)]

    def export(path: Path, opset: int | None) -> str:
        axes = {n: {0: "batch"} for n in (*signature.input_names, *signature.output_names)}
        try:
            with warnings.catch_warnings():
                # The TorchScript exporter is deprecated upstream and says so on every call.
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module, tuple(to_tensor(torch, example[n]) for n in names), str(path),
                    dynamo=False, input_names=names, output_names=signature.output_names,
                    dynamic_axes=axes if batched else None, opset_version=opset,
                )
        except Exception as exc:  # UnsupportedOperatorError, RuntimeError, ...
            raise ConversionError(f"torch.onnx.export failed: {_export_reason(exc)}") from None
        return f"torch.onnx.export(dynamo=False, TorchScript exporter) torch {torch.__version__}"

    return _Source("torchscript", module, signature, example, export, notes)


def _traced_spec(torch: Any, name: str, kind: Any) -> TensorSpec | None:
    """The input's dtype and shape as ``torch.jit.trace`` recorded them, if it did."""
    sizes = kind.sizes() if isinstance(kind, torch.TensorType) else None
    dtype = kind.dtype() if sizes is not None else None
    if sizes is None or dtype is None:
        return None
    return TensorSpec(name=name, datatype=_datatype(torch, dtype), shape=tuple(sizes))


def _given_inputs(filename: str, names: list[str], options: ImportOptions) -> Arrays:
    """A scripted module records no shapes: the user's samples stand in for them."""
    given = options.samples
    if isinstance(given, Path):
        given = _read_numpy(given)
    if isinstance(given, np.ndarray):
        given = {names[0]: given} if len(names) == 1 else None
    if given is None:
        raise ConversionError(
            f"{filename} is a scripted TorchScript module, which records no input shapes "
            "or dtypes, so ferry cannot build its signature",
            hint="pass a few real input rows with --samples inputs.npy (.npz with one array "
            "per input name), or save with torch.jit.trace or torch.export.save",
        )
    missing = [n for n in names if n not in given]
    if missing:
        raise InputError(f"--samples: no array for input {missing[0]!r} (inputs: {names})")
    return {n: np.asarray(given[n]) for n in names}


def _read_numpy(path: Path) -> Arrays | np.ndarray[Any, Any]:
    if path.suffix not in (".npy", ".npz"):
        raise InputError(
            f"--samples {path.name}: a scripted TorchScript module records no input shapes, "
            "so its samples must be .npy or .npz (they define the dtypes)"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"--samples: cannot read {path.name} ({exc})") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        return {k: loaded[k] for k in loaded.files}


def _varies_with_batch(torch: Any, module: Any, example: Arrays) -> bool:
    """Whether the first axis is a batch axis: the module runs on another row count."""
    arrays = list(example.values())
    if any(a.ndim == 0 for a in arrays) or len({a.shape[0] for a in arrays}) != 1:
        return False
    rows = arrays[0].shape[0]
    other = {n: (a[:1] if rows > 1 else np.concatenate([a, a])) for n, a in example.items()}
    try:
        with torch.inference_mode():
            results = flatten_outputs(torch, module(*[to_tensor(torch, a) for a in other.values()]))
    except Exception:  # shape errors: the module needs exactly the traced shapes
        return False
    want = next(iter(other.values())).shape[0]
    return all(r.ndim and r.shape[0] == want for r in results)


def _script_signature(torch: Any, module: Any, example: Arrays, batched: bool) -> Signature:
    try:
        with torch.inference_mode():
            results = flatten_outputs(torch, module(*[to_tensor(torch, a)
                                                      for a in example.values()]))
    except ArtifactError:
        raise
    except Exception as exc:  # the TorchScript interpreter's RuntimeError, with its traceback
        raise InputError(
            f"the module fails on the --samples inputs: {_interpreter_reason(exc)}",
            hint="give rows of the shape and dtype forward expects (float32 for most models)",
        ) from None

    def shape(arr: np.ndarray[Any, Any]) -> tuple[int, ...]:
        return (-1, *arr.shape[1:]) if batched else tuple(arr.shape)

    inputs = [TensorSpec(name=n, datatype=datatype_of(a.dtype), shape=shape(a))
              for n, a in example.items()]
    names = _output_names(len(results), list(example))
    outputs = [TensorSpec(name=n, datatype=_numpy_datatype(r.dtype, n), shape=shape(r))
               for n, r in zip(names, results, strict=True)]
    return Signature(inputs=tuple(inputs), outputs=tuple(outputs))


# --------------------------------------------------------------- shared helpers


def _reference(torch: Any, loaded: _Source) -> Callable[[Arrays], Arrays]:
    names = loaded.signature.output_names

    def run(samples: Arrays) -> Arrays:
        args = [to_tensor(torch, samples[n]) for n in loaded.signature.input_names]
        with torch.inference_mode():
            results = flatten_outputs(torch, loaded.module(*args))
        return dict(zip(names, results, strict=True))

    return run


def _spec(torch: Any, name: str, value: Any) -> TensorSpec:
    """A TensorSpec from a FakeTensor of the exported graph: symbolic dims become -1."""
    shape = tuple(int(d) if isinstance(d, int) else -1 for d in value.shape)
    return TensorSpec(name=name, datatype=_datatype(torch, value.dtype), shape=shape)


def _datatype(torch: Any, dtype: Any) -> str:
    try:
        numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:  # bfloat16 and other dtypes numpy lacks
        raise ConversionError(
            f"tensor dtype {dtype} has no Open Inference Protocol datatype",
            hint="cast the model to float32 (model.float()) and save again",
        ) from None
    return _numpy_datatype(numpy_dtype, str(dtype))


def _numpy_datatype(dtype: np.dtype[Any], what: str) -> str:
    try:
        return datatype_of(dtype)
    except InputError:
        raise ConversionError(
            f"{what}: dtype {dtype} has no Open Inference Protocol datatype"
        ) from None


def _output_names(count: int, taken: list[str]) -> list[str]:
    base = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    return [f"out_{n}" if n in taken else n for n in base]


def _random_inputs(specs: list[TensorSpec] | tuple[TensorSpec, ...], rows: int | None) -> Arrays:
    """Random inputs of the specs' dtypes and shapes (-1 dims become ``rows``, or 3)."""
    rng = np.random.default_rng(0)
    arrays: Arrays = {}
    for spec in specs:
        shape = tuple((rows or 3) if d == -1 else d for d in spec.shape)
        if spec.dtype.kind == "f":
            arrays[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            arrays[spec.name] = rng.random(shape) < 0.5
        else:
            arrays[spec.name] = rng.integers(0, 10, size=shape).astype(spec.dtype)
    return arrays


def _interpreter_reason(exc: BaseException) -> str:
    """The last line of a TorchScript error (the first ones are its code traceback)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _export_reason(exc: BaseException) -> str:
    """The useful line of a torch.onnx error: its "Exception summary", else its first line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "## Exception summary" in lines:
        after = lines[lines.index("## Exception summary") + 1:]
        if after:
            text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", after[0])
            return text[:300]
    first = lines[0] if lines else type(exc).__name__
    return first[:300]

