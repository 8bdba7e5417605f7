"""TensorFlow SavedModel directories, served through their ``serving_default`` signature.

That covers ``tf.saved_model.save(obj, path, signatures=...)`` and a Keras model exported
with ``model.export(path)``. The signature (names, dtypes, shapes with ``-1``) is read from
the serving signature itself, so clients call the ONNX artifact with the same tensor names
they used with TF Serving.

Safety: see :mod:`ferry.runtimes.tensorflow`: ``saved_model.pb`` is parsed and its ops
checked before TensorFlow loads the directory.

Conversion: tf2onnx, the converter the ONNX project maintains for TensorFlow, driven the
way its own ``python -m tf2onnx.convert --saved-model DIR --signature_def serving_default``
command does (``tf_loader.from_saved_model`` then ``_convert_common``), which also renames
the ONNX inputs and outputs to the signature's keys. Keras' ``model.export(format="onnx")``
(see :mod:`ferry.formats.keras`) is the same converter behind a Keras model object, which
a SavedModel no longer is.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ferry.errors import ArtifactError, ConversionError, FerryError
from ferry.formats.base import Converted, Importer, ImportOptions
from ferry.formats.conversion import ARTIFACT, Fallback, convert_or_fall_back, guarded
from ferry.runtimes import Arrays
from ferry.runtimes.tensorflow import (
    SERVING_SIGNATURE,
    call_serving,
    import_tensorflow,
    load_serving_function,
    read_meta_graph,
)
from ferry.signature import Signature, TensorSpec, datatype_of

__all__ = ["SavedModelImporter"]

#: max |Δ| accepted between the source and its ONNX conversion (float32 outputs), as Keras.
TOLERANCE = 1e-4
NATIVE_DIR = "saved_model"


class SavedModelImporter(Importer):
    """A SavedModel directory with a ``serving_default`` signature."""

    format: ClassVar[str] = "savedmodel"
    description: ClassVar[str] = (
        "TensorFlow SavedModel directory (tf.saved_model.save, Keras model.export), "
        "serving_default signature"
    )
    converter: ClassVar[str] = "tf2onnx (as tf2onnx.convert --saved-model)"
    extra: ClassVar[str | None] = "tensorflow"
    requires: ClassVar[tuple[str, ...]] = ("tensorflow", "tf2onnx")
    native_runtime: ClassVar[str | None] = "tensorflow"

    def sniff(self, path: Path) -> bool:
        """A directory holding ``saved_model.pb``, or that file itself (then refused)."""
        if path.is_dir():
            return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()
        # saved_model.pb starts like an ONNX file (field 1, varint 1); claim it by name so
        # the user is told to give its directory instead of an ONNX parse error.
        return path.name == "saved_model.pb" and (path.parent / "variables").is_dir()

    def convert(self, source: Path, workdir: Path, options: ImportOptions) -> Converted:
        """Check and load the SavedModel, convert with tf2onnx and probe; else keep it."""
        if not source.is_dir():
            raise ArtifactError(
                f"{source.name} is one file of a SavedModel; import the directory that holds "
                f"it: ferry import {source.parent} --name ...",
            )
        _refuse_links(source)
        tf = import_tensorflow()
        meta = read_meta_graph(source)
        signature = _serving_signature(meta.signature_def[SERVING_SIGNATURE], source.name)
        loaded, _ = load_serving_function(source)

        @guarded
        def reference(samples: Arrays) -> Arrays:
            # Through ``loaded``: the function alone holds only weak references to variables.
            return call_serving(tf, loaded.signatures[SERVING_SIGNATURE], samples)

        framework = f"tensorflow {tf.__version__}"

        def export(path: Path) -> Converted:
            return Converted(
                artifact=ARTIFACT, signature=signature,
                converter=_convert(source, path, options.opset), framework=framework,
                reference=reference, reference_name=f"{framework} serving_default",
                tolerance=TOLERANCE,
            )

        def store(workdir: Path, note: str) -> Converted:
            shutil.copytree(source, workdir / NATIVE_DIR)
            return Converted(
                artifact=f"{NATIVE_DIR}/saved_model.pb", signature=signature,
                runtime="tensorflow", platform="tensorflow_savedmodel", converter=None,
                framework=framework, reference=reference,
                reference_name=f"{framework} serving_default (source)", tolerance=1e-5,
                notes=[note],
            )

        fallback = Fallback(f"tensorflow ({framework})", store)
        return convert_or_fall_back(workdir, options, export, fallback)


def _refuse_links(source: Path) -> None:
    """A link could pull a file from outside the model into the repository: refuse it."""
    for path in [source, *source.rglob("*")]:
        if path.is_symlink():
            raise ArtifactError(
                f"{source.name}: {path.relative_to(source.parent)} is a symbolic link; "
                "a SavedModel directory must hold its own files",
                hint="copy the directory with its files resolved (cp -rL) and import the copy",
            )


def _serving_signature(definition: Any, name: str) -> Signature:
    """Names, dtypes and shapes (-1 where unknown) of the serving signature, sorted by name."""

    def specs(mapping: Any, role: str) -> tuple[TensorSpec, ...]:
        return tuple(_spec(key, mapping[key], role, name) for key in sorted(mapping))

    return Signature(inputs=specs(definition.inputs, "input"),
                     outputs=specs(definition.outputs, "output"))


def _spec(key: str, info: Any, role: str, name: str) -> TensorSpec:
    import tensorflow as tf

    if info.tensor_shape.unknown_rank:
        raise ConversionError(
            f"{name}: serving {role} {key!r} has an unknown rank; ferry needs each tensor's rank",
            hint="give the tf.function an input_signature with tf.TensorSpec([None, ...])",
        )
    try:
        datatype = datatype_of(tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)
    except (FerryError, TypeError):
        raise ConversionError(
            f"{name}: serving {role} {key!r} has dtype "
            f"{tf.dtypes.as_dtype(info.dtype).name}, which the Open Inference Protocol "
            "cannot carry"
        ) from None
    shape = tuple(int(d.size) if d.size >= 0 else -1 for d in info.tensor_shape.dim)
    return TensorSpec(name=key, datatype=datatype, shape=shape)


def _convert(source: Path, path: Path, opset: int | None) -> str:
    """Convert with tf2onnx as its command line does for ``--saved-model``.

    tf2onnx does not raise on an op it cannot convert: it logs an error and leaves the op
    in the graph. Its error log is captured (and kept off the terminal) to name those ops,
    and the ONNX checker confirms the result.
    """
    import tensorflow as tf
    import tf2onnx
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common

    from ferry.formats.onnx import write_checked_onnx

    with _captured_errors("tf2onnx") as errors:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf2onnx probes deprecated numpy/TF names
                graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
                    str(source), None, None, None, [SERVING_SIGNATURE], None, False,
                    return_initialized_tables=True, return_tensors_to_rename=True,
                )
                with tf.device("/cpu:0"):
                    _convert_common(
                        graph_def, name=source.name, continue_on_error=False, opset=opset,
                        input_names=inputs, output_names=outputs, tensors_to_rename=renames,
                        initialized_tables=tables, output_path=str(path),
                    )
        except Exception as exc:  # tf2onnx raises ValueError, KeyError, RuntimeError...
            raise ConversionError(f"tf2onnx could not convert it: {_first(exc)}") from None
    unsupported = [e for e in errors if e.startswith("Unsupported ops")]
    if unsupported:  # "Unsupported ops: Counter({'Erfinv': 1})"
        ops = ", ".join(re.findall(r"'(\w+)'", unsupported[0])) or unsupported[0]
        raise ConversionError(f"tf2onnx has no ONNX conversion for the TensorFlow op(s) {ops}")
    try:
        write_checked_onnx(path)
    except ArtifactError as exc:
        raise ConversionError(f"tf2onnx produced an invalid model: {exc.message}") from None
    return f"tf2onnx {tf2onnx.__version__} (tensorflow {tf.__version__})"


@contextlib.contextmanager
def _captured_errors(logger_name: str) -> Iterator[list[str]]:
    """Collect a logger's error messages instead of printing them."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger(logger_name)
    handler = _Collect(level=logging.ERROR)
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]

