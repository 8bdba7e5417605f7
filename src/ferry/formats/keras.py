"""Keras models (``.h5`` and ``.keras``), loaded in safe mode and exported to ONNX.

The seed tutorial ends with ``model.save('my_model.h5')``; this module starts there.

Safety: Keras' safe mode refuses to deserialize Python code (``Lambda`` layers carry
marshalled bytecode). ferry also scans the saved config for ``Lambda`` layers before Keras
sees the file, so the refusal is the same for both formats and says what to do instead.

Conversion: ``keras.Model.export(format="onnx")``, Keras' own exporter, which drives tf2onnx
on the TensorFlow backend; it is the path the Keras team maintains. ONNX outputs are then
renamed from tf2onnx's ``Identity:0`` to the Keras output layer names.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ferry.errors import ArtifactError, ConversionError, UntrustedArtifactError
from ferry.formats.base import Converted, Importer, ImportOptions
from ferry.formats.detect import read_head, zip_names
from ferry.runtimes import Arrays
from ferry.signature import Signature

__all__ = ["KerasImporter", "import_keras"]

ARTIFACT = "model.onnx"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class KerasImporter(Importer):
    """Keras 3 models saved with ``model.save()`` as ``.h5`` (legacy) or ``.keras``."""

    format: ClassVar[str] = "keras"
    description: ClassVar[str] = "Keras model (.h5 or .keras from model.save), safe mode"
    converter: ClassVar[str] = "keras.Model.export(format='onnx') (tf2onnx)"
    extra: ClassVar[str | None] = "keras"
    requires: ClassVar[tuple[str, ...]] = ("keras", "tensorflow", "tf2onnx", "h5py")

    def sniff(self, path: Path) -> bool:
        """An HDF5 file, or a zip holding Keras' ``config.json`` and ``metadata.json``."""
        if read_head(path, 8) == _HDF5_MAGIC:
            return True
        names = zip_names(path)
        return "config.json" in names and "metadata.json" in names

    def convert(self, source: Path, workdir: Path, options: ImportOptions) -> Converted:
        """Scan, load in safe mode, export to ONNX, and name the outputs after the layers."""
        config = _read_config(source)
        _refuse_lambdas(config, source.name)
        keras = import_keras()
        model = _load(keras, source)
        _check_float32(model)
        input_names = [t.name for t in model.inputs]
        output_names = _output_names(model)
        onnx_path = workdir / ARTIFACT
        _export(model, onnx_path, options.opset)
        signature = _rename_outputs(onnx_path, output_names)
        import tensorflow as tf
        import tf2onnx

        def reference(samples: Arrays) -> Arrays:
            args = [samples[name] for name in input_names]
            result = model.predict(args if len(args) > 1 else args[0], verbose=0)
            results = result if isinstance(result, list | tuple) else [result]
            return {n: np.asarray(r) for n, r in zip(output_names, results, strict=True)}

        return Converted(
            artifact=ARTIFACT,
            signature=signature,
            converter=f"keras {keras.__version__} export, tf2onnx {tf2onnx.__version__}",
            framework=f"keras {keras.__version__} (tensorflow {tf.__version__})",
            reference=reference,
            reference_name=f"keras {keras.__version__} model.predict",
            tolerance=1e-4,
        )


def _output_names(model: Any) -> list[str]:
    """The names of the layers that produce the outputs (``dense_2``), else ``output_N``."""
    names = []
    for tensor in model.outputs:
        history = getattr(tensor, "_keras_history", None)  # Keras keeps no public accessor
        names.append(getattr(history[0], "name", None) if history else None)
    if None in names or len(set(names)) != len(names):
        return [f"output_{i}" for i in range(len(names))]
    return [str(n) for n in names]


def _read_config(source: Path) -> dict[str, Any]:
    """The model's architecture JSON, read without Keras (h5py for .h5, zipfile for .keras)."""
    try:
        if read_head(source, 8) == _HDF5_MAGIC:
            import h5py

            with h5py.File(source, "r") as handle:
                raw = handle.attrs.get("model_config")
            if raw is None:
                raise ArtifactError(
                    f"{source.name} is an HDF5 file without a Keras model config: it holds "
                    "weights only (model.save_weights?)",
                    hint="save the whole model with model.save('my_model.h5')",
                )
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
        else:
            with zipfile.ZipFile(source) as archive:
                text = archive.read("config.json").decode("utf-8")
        config: dict[str, Any] = json.loads(text)
        return config
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ArtifactError(
            f"{source.name} cannot be read as a Keras model ({exc})",
            hint="the file may be truncated or corrupted; save it again",
        ) from None


def _layers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "class_name" in node and "config" in node:
            yield node
        for value in node.values():
            yield from _layers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _layers(value)


def _refuse_lambdas(config: dict[str, Any], filename: str) -> None:
    for layer in _layers(config):
        if layer.get("class_name") == "Lambda":
            name = layer["config"].get("name", "?") if isinstance(layer["config"], dict) else "?"
            raise UntrustedArtifactError(
                f"{filename} contains a Lambda layer ({name!r}); loading it would run Python "
                "code stored in the file, which safe mode refuses",
                hint="replace the Lambda with a built-in layer or a registered custom layer "
                "class, save again, and import that file",
            )


def import_keras() -> Any:
    """Import Keras with TensorFlow's C++ and Python logging turned down to errors.

    oneDNN's fused kernels are switched off (unless the user set ``TF_ENABLE_ONEDNN_OPTS``):
    TensorFlow announces them on every start, and the plain kernels make Keras the more
    faithful reference for the parity check.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import logging

    for noisy in ("tensorflow", "tf2onnx", "absl"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import keras

    return keras


def _load(keras: Any, source: Path) -> Any:
    try:
        return keras.models.load_model(source, safe_mode=True, compile=False)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "arbitrary code" in str(exc):
            raise UntrustedArtifactError(
                f"{source.name}: Keras safe mode refuses it: {_first_sentence(exc)}"
            ) from None
        raise ArtifactError(
            f"{source.name}: Keras cannot load it: {_first_sentence(exc)}"
        ) from None
    except TypeError as exc:  # unknown layer classes: "Could not locate class 'MyLayer'"
        raise ArtifactError(
            f"{source.name} uses a class Keras cannot find: {_first_sentence(exc)}",
            hint="custom layers must be registered with @keras.saving.register_keras_serializable",
        ) from None
    except Exception as exc:  # h5py, zipfile and Keras raise many types for damaged files
        raise ArtifactError(
            f"{source.name}: Keras cannot load it ({_first_sentence(exc)}); the file may be "
            "truncated or corrupted"
        ) from None


def _check_float32(model: Any) -> None:
    policy = getattr(getattr(model, "dtype_policy", None), "name", "float32")
    if policy != "float32":
        raise ConversionError(
            f"the model uses dtype policy {policy!r}; ONNX export needs 'float32'",
            hint="set keras.config.set_dtype_policy('float32') before building, or cast the "
            "model's weights and save again",
        )


def _export(model: Any, path: Path, opset: int | None) -> None:
    import keras

    specs = [keras.InputSpec(shape=t.shape, dtype=t.dtype, name=t.name) for t in model.inputs]
    signature = [specs] if len(specs) > 1 else specs
    try:
        with warnings.catch_warnings():
            # Keras' tf2onnx shim probes np.object, which numpy 2 warns about.
            warnings.simplefilter("ignore", FutureWarning)
            model.export(str(path), format="onnx", verbose=False, input_signature=signature,
                         opset_version=opset)
    except Exception as exc:  # tf2onnx raises many types; all mean "could not convert"
        raise ConversionError(f"Keras could not export the model to ONNX: {exc}") from None


def _rename_outputs(path: Path, names: list[str]) -> Signature:
    """Give the ONNX outputs the Keras output names and return the artifact's signature."""
    import onnx

    from ferry.formats.onnx import onnx_signature

    model = onnx.load(str(path))
    renames = {out.name: new for out, new in zip(model.graph.output, names, strict=True)}
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name in renames:
                node.output[i] = renames[name]
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
    for out in model.graph.output:
        out.name = renames[out.name]
    onnx.save(model, str(path))
    return onnx_signature(model)


def _first_sentence(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
