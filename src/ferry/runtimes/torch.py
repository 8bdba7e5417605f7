"""PyTorch as a native runtime: torch.export programs (``.pt2``) and TorchScript files.

A torch model is served natively when its ONNX conversion fails or misses parity, or when
the user asks for it (``ferry import --native``). Both loaders here are the safe ones:

* ``torch.export.load`` reads a JSON graph and raw tensor files, but torch falls back to
  full pickle for some payloads (weights or constants saved with ``use_pickle``, "opaque"
  objects, and the sample inputs when ``weights_only`` loading fails). :func:`load_exported_program`
  therefore checks the archive first and refuses any payload that only full pickle could
  read, so no code from the file ever runs.
* ``torch.jit.load`` unpickles with TorchScript's own C++ unpickler, which rebuilds
  TorchScript types only; the code in the archive is TorchScript, run by torch's
  interpreter, never Python.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ferry.errors import ArtifactError, InputError, MissingDependencyError, UntrustedArtifactError
from ferry.runtimes.base import Arrays, Runtime, RuntimeOptions
from ferry.signature import Signature

__all__ = [
    "TorchExportRuntime",
    "TorchScriptRuntime",
    "check_pt2_archive",
    "flatten_outputs",
    "import_torch",
    "load_exported_program",
    "load_torchscript",
    "to_tensor",
]

_RESAVE = (
    "save the module with torch.export.save(torch.export.export(model, (example,)), "
    "'model.pt2')"
)


def import_torch() -> Any:
    """Import torch, or raise :class:`MissingDependencyError` naming ``ferry[torch]``.

    torch's ONNX exporter logs a warning per missing optional package (torchvision) on
    every export; those go to errors-only here so the CLI stays one line per step.
    """
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("running PyTorch models", "torch") from None
    for noisy in ("torch.onnx", "torch.export", "torch._export", "torch.fx.experimental"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    return torch


def check_pt2_archive(path: Path) -> None:
    """Refuse a ``.pt2`` archive that ``torch.export.load`` could only read with pickle.

    Reads the archive's directory and its JSON payload configs, without torch.

    Raises:
        ArtifactError: not a torch.export archive, or an older layout torch no longer
            reads without pickle.
        UntrustedArtifactError: a payload (weights, constants, custom or opaque objects,
            compiled AOTInductor code) would be unpickled or executed.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            prefix = _archive_prefix(names, path.name)
            inner = {n[len(prefix):] for n in names}
            if "archive_format" not in inner or not any(
                n.startswith("models/") and n.endswith(".json") for n in inner
            ):
                raise ArtifactError(
                    f"{path.name} is not a torch.export archive (no archive_format and "
                    "models/*.json); it may come from an older torch",
                    hint=_RESAVE + " with torch 2.6 or newer",
                )
            if any(n.startswith("data/aotinductor/") for n in inner):
                raise UntrustedArtifactError(
                    f"{path.name} holds AOTInductor-compiled native code, which ferry does "
                    "not load",
                    hint=_RESAVE + " (without torch._inductor.aoti_compile_and_package)",
                )
            for model in _model_names(inner):
                _check_payloads(archive, prefix, inner, model, path.name)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise ArtifactError(
            f"{path.name} is not a readable torch.export archive ({exc})",
            hint="the file may be truncated or corrupted; save it again",
        ) from None


def _archive_prefix(names: list[str], filename: str) -> str:
    """The one top-level folder torch writes every member under (the file's stem)."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    if len(tops) != 1:
        raise ArtifactError(f"{filename} is not a torch archive (members under {len(tops)} roots)")
    return tops.pop() + "/"


def _model_names(inner: set[str]) -> list[str]:
    return sorted(n[len("models/"):-len(".json")] for n in inner
                  if n.startswith("models/") and n.endswith(".json") and n.count("/") == 1)


def _check_payloads(archive: zipfile.ZipFile, prefix: str, inner: set[str], model: str,
                    filename: str) -> None:
    for kind in ("weights", "constants"):
        if f"data/{kind}/{model}.pt" in inner:
            raise UntrustedArtifactError(
                f"{filename} keeps its {kind} in the legacy pickled layout, which torch "
                "may read with full pickle", hint=_RESAVE + " with torch 2.6 or newer",
            )
        config_name = f"data/{kind}/{model}_{kind}_config.json"
        if config_name not in inner:
            continue
        config = json.loads(archive.read(prefix + config_name)).get("config", {})
        for fqn, meta in config.items():
            path_name = str(meta.get("path_name", ""))
            pickled = bool(meta.get("use_pickle")) or (
                kind == "constants" and not path_name.startswith("tensor_")
            )
            if pickled:
                raise UntrustedArtifactError(
                    f"{filename}: {kind[:-1]} {fqn!r} is stored as a pickled Python object "
                    f"({path_name}); loading it would run code from the file",
                    hint="keep only tensors as parameters, buffers and constants, then "
                    + _RESAVE,
                )


def _check_sample_inputs(path: Path, torch: Any) -> None:
    """Pre-check the sample inputs: torch retries them with full pickle if weights_only fails."""
    with zipfile.ZipFile(path) as archive:
        prefix = _archive_prefix(archive.namelist(), path.name)
        blobs = [n for n in archive.namelist() if n.startswith(prefix + "data/sample_inputs/")]
        for name in blobs:
            try:
                torch.load(io.BytesIO(archive.read(name)), weights_only=True, map_location="cpu")
            except Exception as exc:  # UnpicklingError and friends: not plain tensors
                raise UntrustedArtifactError(
                    f"{path.name}: its sample inputs are not plain tensors "
                    f"({_first_line(exc)}); loading them would need full pickle",
                    hint="export with tensor example inputs only, then " + _RESAVE,
                ) from None


def load_exported_program(path: Path) -> Any:
    """Check a ``.pt2`` archive (:func:`check_pt2_archive`) and load it with torch.export.

    Raises:
        ArtifactError: unreadable or unsafe archive (see :func:`check_pt2_archive`).
    """
    check_pt2_archive(path)
    torch = import_torch()
    _check_sample_inputs(path, torch)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about its own pytree internals
            return torch.export.load(str(path))
    except Exception as exc:  # torch raises RuntimeError, KeyError, SerializeError...
        raise ArtifactError(
            f"torch.export.load cannot load {path.name}: {_first_line(exc)}",
            hint="the file may be truncated or corrupted, or saved by another torch version",
        ) from None


def load_torchscript(path: Path, *, restore_shapes: bool = False) -> Any:
    """Load a TorchScript archive with ``torch.jit.load`` on the CPU.

    Args:
        path: the ``torch.jit.save`` file.
        restore_shapes: re-create the input shapes recorded by ``torch.jit.trace`` (the
            importer reads them from ``module.graph``).

    Raises:
        ArtifactError: torch cannot read it (truncated, corrupted, not TorchScript).
    """
    torch = import_torch()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "torch.jit is deprecated"
            module = torch.jit.load(str(path), map_location="cpu",
                                    _restore_shapes=restore_shapes)
    except Exception as exc:  # RuntimeError from the C++ reader, for every kind of damage
        raise ArtifactError(
            f"torch.jit.load cannot load {path.name}: {_first_line(exc)}",
            hint="the file may be truncated or corrupted; save it again with torch.jit.save",
        ) from None
    module.eval()
    return module


def to_tensor(torch: Any, array: np.ndarray[Any, Any]) -> Any:
    """A CPU tensor over ``array``; read-only arrays (zero-copy request buffers) are copied."""
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")
    return torch.from_numpy(array)


def flatten_outputs(torch: Any, result: Any) -> list[np.ndarray[Any, Any]]:
    """A module's return value as a list of numpy arrays (tensor, or tuple/list of them).

    Raises:
        ArtifactError: the module returns something other than tensors.
    """
    items = list(result) if isinstance(result, list | tuple) else [result]
    arrays = []
    for item in items:
        if not isinstance(item, torch.Tensor):
            raise ArtifactError(
                f"the module returns a {type(item).__name__}; ferry serves modules that "
                "return a tensor or a tuple of tensors"
            )
        arrays.append(item.detach().cpu().numpy())
    return arrays


class _TorchRuntime(Runtime):
    """Calls a torch module positionally, inputs in signature order, no autograd."""

    def __init__(self, module: Any, signature: Signature, torch: Any) -> None:
        super().__init__(signature)
        self._module = module
        self._torch = torch

    def predict(self, inputs: Mapping[str, np.ndarray[Any, Any]],
                outputs: Sequence[str] | None = None) -> Arrays:
        """Run the module under ``torch.inference_mode``; tensors become numpy arrays."""
        torch = self._torch
        args = [to_tensor(torch, inputs[name]) for name in self.signature.input_names]
        try:
            with torch.inference_mode():
                results = flatten_outputs(torch, self._module(*args))
        except (RuntimeError, ValueError, IndexError, AssertionError) as exc:
            raise InputError(f"the model rejected these input values: {_first_line(exc)}") from None
        names = self.signature.output_names
        if len(results) != len(names):
            raise ArtifactError(
                f"the module returned {len(results)} outputs; the manifest lists {len(names)}"
            )
        by_name = dict(zip(names, results, strict=True))
        return {name: by_name[name] for name in (outputs or names)}

    def close(self) -> None:
        """Drop the module; torch frees its tensors when the last reference goes."""
        self._module = None


class TorchExportRuntime(_TorchRuntime):
    """Runs a ``torch.export`` program (``.pt2``) through ``ExportedProgram.module()``."""

    name: ClassVar[str] = "torch"

    @classmethod
    def load(cls, artifact: Path, signature: Signature,
             options: RuntimeOptions) -> TorchExportRuntime:
        """Check and load the archive; intra-op threads follow ``options``."""
        torch = import_torch()
        _threads(torch, options)
        program = load_exported_program(artifact)
        return cls(program.module(), signature, torch)


class TorchScriptRuntime(_TorchRuntime):
    """Runs a TorchScript archive (``torch.jit.save``) in torch's TorchScript interpreter."""

    name: ClassVar[str] = "torchscript"

    @classmethod
    def load(cls, artifact: Path, signature: Signature,
             options: RuntimeOptions) -> TorchScriptRuntime:
        """Load the archive on the CPU; intra-op threads follow ``options``."""
        torch = import_torch()
        _threads(torch, options)
        return cls(load_torchscript(artifact), signature, torch)


def _threads(torch: Any, options: RuntimeOptions) -> None:
    # torch's thread pool is process-wide: only an explicit setting changes it.
    if options.intra_op_threads:
        torch.set_num_threads(options.intra_op_threads)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) < 300 else line[:297] + "..."
