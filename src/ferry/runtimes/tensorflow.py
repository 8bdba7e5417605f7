"""TensorFlow as a native runtime: a SavedModel's ``serving_default`` signature.

Used when a SavedModel's ONNX conversion fails or misses parity, or on ``--native``.

Safety: a SavedModel is a graph of TensorFlow ops, not Python, and ``tf.saved_model.load``
runs no Python from it. But some ops read or write files or call back into Python, and a
SavedModel runs some functions at load time (resource initializers). So before
TensorFlow sees the directory, :func:`read_meta_graph` parses ``saved_model.pb`` with
protobuf and refuses any function that uses such an op; checkpoint ops are allowed only in
the saver's own save/restore functions, which TensorFlow calls with its own paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ferry.errors import ArtifactError, InputError, MissingDependencyError, UntrustedArtifactError
from ferry.runtimes.base import Arrays, Runtime, RuntimeOptions
from ferry.signature import Signature

__all__ = [
    "SERVING_SIGNATURE",
    "SavedModelRuntime",
    "call_serving",
    "import_tensorflow",
    "load_serving_function",
    "read_meta_graph",
]

#: The signature ferry serves: the one ``model.export`` and TF Serving use by default.
SERVING_SIGNATURE = "serving_default"

# Ops that touch the file system, call Python, or write summaries/debug dumps. A model's
# inference never needs them; a hostile file could use them at load or at predict time.
_DENIED_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst",
    "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
    "MergeV2Checkpoints",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteScalarSummary",
    "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary",
    "WriteRawProtoSummary", "ImportEvent",
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
    "DebugNumericSummary", "DebugNumericSummaryV2",
    "TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "TextLineDataset", "SaveDataset", "SaveDatasetV2",
    "LoadDataset", "DatasetToTFRecord", "LoadAndRemapMatrix",
})
# The saver's functions write and read the checkpoint TensorFlow points them at.
_CHECKPOINT_OPS = frozenset({
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
})


def import_tensorflow() -> Any:
    """Import TensorFlow quietly, or raise :class:`MissingDependencyError`.

    oneDNN's fused kernels are switched off unless the user set ``TF_ENABLE_ONEDNN_OPTS``,
    as for Keras: TensorFlow announces them on every start, and the plain kernels make
    the source the more faithful reference for the parity check.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    for noisy in ("tensorflow", "tf2onnx", "absl"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingDependencyError("running TensorFlow SavedModels", "tensorflow") from None
    return tf


def read_meta_graph(directory: Path) -> Any:
    """Parse ``saved_model.pb``, check it, and return its serving MetaGraphDef.

    Raises:
        ArtifactError: no or unreadable ``saved_model.pb``, no ``serving_default``
            signature, or variables the directory does not hold.
        UntrustedArtifactError: a function uses an op that reads or writes files or calls
            Python.
    """
    import_tensorflow()
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    name = directory.name
    pb = directory / "saved_model.pb"
    if not pb.is_file():
        raise ArtifactError(
            f"{name} holds no saved_model.pb"
            + (" (text-format saved_model.pbtxt is not supported)"
               if (directory / "saved_model.pbtxt").exists() else ""),
            hint="save it with tf.saved_model.save(obj, path) or model.export(path)",
        )
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(pb.read_bytes())
    except (DecodeError, OSError) as exc:
        raise ArtifactError(
            f"{name}/saved_model.pb is not a readable SavedModel ({exc}); it is truncated "
            "or corrupted", hint="save the model again and copy the whole directory",
        ) from None
    meta = _serving_meta_graph(saved, name)
    _check_variables(directory, meta)
    _check_ops(meta, name)
    return meta


def _serving_meta_graph(saved: Any, name: str) -> Any:
    graphs = list(saved.meta_graphs)
    if not graphs:
        raise ArtifactError(f"{name}/saved_model.pb holds no graph (truncated or corrupted?)")
    serving = [g for g in graphs if "serve" in g.meta_info_def.tags] or graphs
    for graph in serving:
        if SERVING_SIGNATURE in graph.signature_def:
            return graph
    found = sorted({s for g in graphs for s in g.signature_def if not s.startswith("__")})
    raise ArtifactError(
        f"{name} has no {SERVING_SIGNATURE!r} signature (it has: "
        f"{', '.join(found) or 'none'})",
        hint="save with tf.saved_model.save(obj, path, signatures={'serving_default': fn}) "
        "or export a Keras model with model.export(path)",
    )


def _check_variables(directory: Path, meta: Any) -> None:
    has_variables = any(n.WhichOneof("kind") == "variable" for n in meta.object_graph_def.nodes)
    if not has_variables:
        return
    folder = directory / "variables"
    if not (folder / "variables.index").is_file() or not any(folder.glob("variables.data-*")):
        raise ArtifactError(
            f"{directory.name} is missing its variables (variables/variables.index and "
            "variables/variables.data-*); the SavedModel directory was copied incompletely",
            hint="copy the whole directory, including variables/ and assets/",
        )


def _check_ops(meta: Any, name: str) -> None:
    functions = {f.signature.name: f for f in meta.graph_def.library.function}
    saver_nodes = {t.split(":")[0].lstrip("^") for t in
                   (meta.saver_def.save_tensor_name, meta.saver_def.restore_op_name) if t}
    roots = [f for n in meta.graph_def.node if n.name in saver_nodes for f in _called(n)]
    saver_functions = _closure(roots, functions)
    # A TF1 saver keeps its save/restore nodes in the graph itself, under its own scope.
    restore = meta.saver_def.restore_op_name
    scope = restore.rsplit("/", 1)[0] + "/" if "/" in restore else None
    for node in meta.graph_def.node:
        allowed = _CHECKPOINT_OPS if scope and node.name.startswith(scope) else frozenset()
        _refuse_ops([node], name, "the graph", allowed)
    for fname, function in functions.items():
        allowed = _CHECKPOINT_OPS if fname in saver_functions else frozenset()
        _refuse_ops(function.node_def, name, f"function {fname!r}", allowed)


def _refuse_ops(nodes: Any, name: str, where: str, allowed: frozenset[str]) -> None:
    for node in nodes:
        to_file = node.op == "PrintV2" and node.attr["output_stream"].s.startswith(b"file://")
        if (node.op in _DENIED_OPS and node.op not in allowed) or to_file:
            raise UntrustedArtifactError(
                f"{name}: {where} uses the op {node.op} (node {node.name!r}), which reads or "
                "writes files or calls Python; ferry does not load such SavedModels",
                hint="export a serving function that only computes (model.export(path))",
            )


def _called(node: Any) -> Iterator[str]:
    """Names of the functions a node calls (``f`` of PartitionedCall, branches of If...)."""
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        if value.HasField("list"):
            yield from (f.name for f in value.list.func)


def _closure(roots: list[str], functions: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        fname = todo.pop()
        if fname in seen or fname not in functions:
            continue
        seen.add(fname)
        for node in functions[fname].node_def:
            todo.extend(_called(node))
    return seen


def load_serving_function(directory: Path) -> tuple[Any, Any]:
    """Check the SavedModel and load it; return the loaded object and its serving function.

    Keep the object alive as long as the function: the function only holds weak references
    to the variables it reads.

    Raises:
        ArtifactError: as :func:`read_meta_graph`, or TensorFlow cannot load it.
    """
    read_meta_graph(directory)
    tf = import_tensorflow()
    try:
        loaded = tf.saved_model.load(str(directory))
        function = loaded.signatures[SERVING_SIGNATURE]
    except Exception as exc:  # OSError, ValueError, tf.errors.*: a broken directory
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ArtifactError(
            f"TensorFlow cannot load the SavedModel {directory.name}: {first[:300]}",
            hint="the directory may be incomplete or corrupted; save it again",
        ) from None
    return loaded, function


def call_serving(tf: Any, function: Any, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Arrays:
    """Call a serving function with numpy arrays; return numpy arrays by output name."""
    result = function(**{name: tf.constant(arr) for name, arr in inputs.items()})
    return {name: tensor.numpy() for name, tensor in result.items()}


class SavedModelRuntime(Runtime):
    """Runs a SavedModel's ``serving_default`` function with TensorFlow (eager, CPU)."""

    name: ClassVar[str] = "tensorflow"

    def __init__(self, loaded: Any, function: Any, signature: Signature, tf: Any) -> None:
        super().__init__(signature)
        self._loaded = loaded  # owns the variables the function reads
        self._function = function
        self._tf = tf

    @classmethod
    def load(cls, artifact: Path, signature: Signature,
             options: RuntimeOptions) -> SavedModelRuntime:
        """Load the SavedModel that holds ``artifact`` (its ``saved_model.pb``)."""
        directory = artifact.parent if artifact.name == "saved_model.pb" else artifact
        tf = import_tensorflow()
        _threads(tf, options)
        loaded, function = load_serving_function(directory)
        return cls(loaded, function, signature, tf)

    def predict(self, inputs: Mapping[str, np.ndarray[Any, Any]],
                outputs: Sequence[str] | None = None) -> Arrays:
        """Call the serving function; every output is computed, the requested returned."""
        try:
            results = call_serving(self._tf, self._function, inputs)
        except (self._tf.errors.OpError, ValueError, TypeError) as exc:
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise InputError(f"the model rejected these input values: {first[:300]}") from None
        names = list(outputs) if outputs is not None else self.signature.output_names
        return {name: results[name] for name in names}

    def close(self) -> None:
        """Drop the function and the object; TensorFlow frees them with the last reference."""
        self._function = None
        self._loaded = None


def _threads(tf: Any, options: RuntimeOptions) -> None:
    # TensorFlow's thread pools are process-wide and fixed once the runtime has started.
    try:
        if options.intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(options.intra_op_threads)
        if options.inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(options.inter_op_threads)
    except RuntimeError:
        pass  # already initialised by an earlier model: the first setting stands
