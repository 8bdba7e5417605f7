"""ONNX Runtime: the default runtime. It releases the GIL while it computes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from ferry.errors import ArtifactError, InputError
from ferry.runtimes.base import Arrays, Runtime, RuntimeOptions, usable_cpus
from ferry.signature import Signature

__all__ = ["ORT_TYPES", "OrtRuntime", "session_options"]

#: ONNX Runtime's type strings -> V2 datatypes.
ORT_TYPES: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(options: RuntimeOptions) -> ort.SessionOptions:
    """Translate ferry's runtime options into ONNX Runtime session options."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads or usable_cpus()
    so.inter_op_num_threads = options.inter_op_threads
    so.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL
        if options.execution_mode == "parallel"
        else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    so.graph_optimization_level = _LEVELS[options.graph_optimization]
    so.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if options.allow_spinning else "0"
    )
    so.log_severity_level = 3  # errors only: ORT's warnings are about its own graph rewrites
    return so


class OrtRuntime(Runtime):
    """Runs an ``.onnx`` artifact on ONNX Runtime's CPU provider."""

    name: ClassVar[str] = "onnxruntime"

    def __init__(self, session: ort.InferenceSession, signature: Signature) -> None:
        super().__init__(signature)
        self._session = session
        self._strings_in = {s.name for s in signature.inputs if s.datatype == "BYTES"}
        self._strings_out = {s.name for s in signature.outputs if s.datatype == "BYTES"}
        self._output_names = signature.output_names

    @classmethod
    def load(cls, artifact: Path, signature: Signature, options: RuntimeOptions) -> OrtRuntime:
        """Create an inference session and check it against the recorded signature."""
        try:
            session = ort.InferenceSession(
                str(artifact), sess_options=session_options(options),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # ORT raises its own pybind exception types
            raise ArtifactError(f"ONNX Runtime cannot load {artifact.name}: {exc}") from None
        _check_signature(session, signature)
        return cls(session, signature)

    def predict(self, inputs: Mapping[str, np.ndarray[Any, Any]],
                outputs: Sequence[str] | None = None) -> Arrays:
        """Run the session; string tensors are converted between ``bytes`` and ``str``."""
        # Numeric tensors (the common case) pass through untouched: this runs for every call.
        feed = {
            name: _decode_strings(name, arr) if name in self._strings_in else arr
            for name, arr in inputs.items()
        } if self._strings_in else inputs
        names = list(outputs) if outputs is not None else self._output_names
        try:
            results = self._session.run(names, feed)
        except Exception as exc:  # data-dependent failures: index out of range, bad reshape
            raise InputError(f"the model rejected these input values: {exc}") from None
        if not self._strings_out:
            return dict(zip(names, results, strict=True))
        return {
            name: _encode_strings(arr) if name in self._strings_out else arr
            for name, arr in zip(names, results, strict=True)
        }

    def close(self) -> None:
        """Drop the session; ONNX Runtime frees its memory when the last reference goes."""
        self._session = None


def _check_signature(session: ort.InferenceSession, signature: Signature) -> None:
    have_in = [i.name for i in session.get_inputs()]
    have_out = [o.name for o in session.get_outputs()]
    if sorted(have_in) != sorted(signature.input_names):
        raise ArtifactError(
            f"the ONNX graph's inputs {have_in} do not match the manifest's "
            f"{signature.input_names}"
        )
    missing = [n for n in signature.output_names if n not in have_out]
    if missing:
        raise ArtifactError(f"the ONNX graph has no output {missing[0]!r} that the manifest lists")


def _decode_strings(name: str, arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # ONNX string tensors hold text: bytes that are not UTF-8 would come back altered, so
    # they are refused rather than silently replaced.
    flat = arr.reshape(-1)
    out = np.empty(len(flat), dtype=object)
    for i, value in enumerate(flat):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(
                    f"input {name!r}: element {i} is not UTF-8 text ({value[:16]!r}); "
                    "this ONNX model's string tensors hold text, not arbitrary bytes"
                ) from None
        out[i] = value
    return out.reshape(arr.shape)


def _encode_strings(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    flat = [v.encode("utf-8") if isinstance(v, str) else v for v in arr.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(arr.shape)
