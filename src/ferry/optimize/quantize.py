"""Quantization with ONNX Runtime's own tools: dynamic INT8, static INT8 (QDQ), FP16.

Defaults, per operator type and per CPU instruction set:

* **dynamic** (``quantize_dynamic``): weights of MatMul, Conv, Gather (and ONNX Runtime's
  Attention/LSTM) become signed 8-bit, activations are quantized to unsigned 8-bit at run
  time. Gemm is not quantized dynamically by ONNX Runtime; a model made only of Gemm is
  refused with the advice to use ``static``. On a CPU without VNNI (AVX2 only) weights use
  7 bits (``reduce_range``) to avoid the saturation of ``VPMADDUBSW``.
* **static** (``quantize_static``, QDQ format, MinMax calibration on the given samples):
  weights signed 8-bit per channel; activations unsigned 8-bit on a CPU with VNNI (U8S8,
  ONNX Runtime's fast path there), signed 8-bit otherwise (S8S8, its recommended default).
* **fp16** (``onnxruntime.transformers.float16``): initializers and computation in float16,
  inputs and outputs kept float32 (``keep_io_types``) so clients do not change. Operators
  for which ONNX Runtime's CPU provider has no float16 kernel stay float32.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from ferry.errors import ConversionError, FerryError, InputError

__all__ = ["MODES", "QuantizeResult", "cpu_has_vnni", "quantize"]

Mode = Literal["dynamic", "static", "fp16"]
MODES: tuple[str, ...] = ("dynamic", "static", "fp16")

#: Operators ONNX Runtime quantizes, per mode (onnxruntime.quantization.registry).
DYNAMIC_OPS = frozenset({"MatMul", "Conv", "Gather", "Attention", "LSTM"})
STATIC_OPS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "Gather"})
_FLOAT = (onnx.TensorProto.FLOAT,)
_CALIBRATION_BATCH = 32


@dataclass(frozen=True)
class QuantizeResult:
    """The settings a quantization ran with, for the manifest's step."""

    settings: dict[str, Any]

    def summary(self) -> str:
        """One line for the report."""
        return ", ".join(f"{k} {v}" for k, v in self.settings.items())


def cpu_has_vnni() -> bool:
    """Whether this CPU has AVX-512 VNNI or AVX-VNNI (Linux: /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_vnni|avx_vnni)\b", text))


def quantize(src: Path, dst: Path, mode: str, *,
             calibration: Mapping[str, np.ndarray[Any, Any]] | None = None) -> QuantizeResult:
    """Quantize the model at ``src`` into ``dst``.

    Raises:
        InputError: an unknown mode, static without calibration data, or a model whose
            operators the mode cannot take (the message names them).
    """
    if mode not in MODES:
        raise InputError(f"--quantize {mode!r}: choose one of {', '.join(MODES)}")
    model = onnx.load(str(src), load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # ORT's advice
    if mode == "dynamic":
        _require(ops, DYNAMIC_OPS, mode, "try --quantize static (it quantizes Gemm too)")
        return _dynamic(src, dst)
    if mode == "static":
        _require(ops, STATIC_OPS, mode, "try --quantize fp16")
        if calibration is None:
            raise InputError("--quantize static needs calibration data: --calibration FILE "
                             "(sample inputs, .npz/.npy/.json as --samples reads them)")
        return _static(src, dst, calibration)
    return _fp16(src, dst)


def _require(ops: set[str], takes: frozenset[str], mode: str, hint: str) -> None:
    if not ops & takes:
        raise InputError(
            f"--quantize {mode}: the model's operators ({', '.join(sorted(ops))}) include none "
            f"that {mode} quantization takes ({', '.join(sorted(takes))}); {hint}"
        )


def _dynamic(src: Path, dst: Path) -> QuantizeResult:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    vnni = cpu_has_vnni()
    with _tool_errors("quantize_dynamic"):
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                         reduce_range=not vnni)
    _check_changed(dst, "dynamic", ("MatMulInteger", "ConvInteger", "DynamicQuantizeLinear",
                                    "DynamicQuantizeMatMul", "DynamicQuantizeLSTM"))
    return QuantizeResult({"mode": "dynamic", "weights": "int8",
                           "activations": "uint8 (at run time)", "reduce_range": not vnni,
                           "vnni": vnni})


def _batches(arrays: Mapping[str, np.ndarray[Any, Any]]
             ) -> Iterator[dict[str, np.ndarray[Any, Any]]]:
    rows = len(next(iter(arrays.values())))
    for start in range(0, rows, _CALIBRATION_BATCH):
        yield {name: value[start:start + _CALIBRATION_BATCH] for name, value in arrays.items()}


def _static(src: Path, dst: Path, calibration: Mapping[str, np.ndarray[Any, Any]]
            ) -> QuantizeResult:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Calibration(CalibrationDataReader):  # type: ignore[misc]
        """ONNX Runtime's reader over the calibration rows, in batches."""

        def __init__(self) -> None:
            self._batches = _batches(calibration)

        def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
            return next(self._batches, None)

    reader = Calibration()
    vnni = cpu_has_vnni()
    activations = QuantType.QUInt8 if vnni else QuantType.QInt8
    with _tool_errors("quantize_static"):
        quantize_static(
            str(src), str(dst), reader, quant_format=QuantFormat.QDQ,
            activation_type=activations, weight_type=QuantType.QInt8, per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
    _check_changed(dst, "static", ("QuantizeLinear",))
    rows = len(next(iter(calibration.values())))
    return QuantizeResult({
        "mode": "static", "format": "QDQ", "weights": "int8 per channel",
        "activations": "uint8" if vnni else "int8", "calibration": "MinMax",
        "calibration_rows": rows, "vnni": vnni,
    })


def _fp16(src: Path, dst: Path) -> QuantizeResult:
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    if not any(init.data_type in _FLOAT for init in model.graph.initializer):
        raise InputError("--quantize fp16: the model has no float32 weights to convert")
    blocked: list[str] = []
    for _ in range(20):
        with warnings.catch_warnings(), _tool_errors("float16 converter"):
            warnings.simplefilter("ignore")  # values beyond float16's range are clamped
            half = convert_float_to_float16(
                onnx.load(str(src)), keep_io_types=True,
                op_block_list=[*DEFAULT_OP_BLOCK_LIST, *blocked],
            )
        onnx.save(half, str(dst))
        try:
            ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
            break
        except Exception as exc:  # ORT's own exception types: find the kernel it lacks
            missing = re.search(r"implementation for (\w+)\(", str(exc))
            if missing is None or missing.group(1) in blocked:
                raise InputError(f"--quantize fp16: ONNX Runtime cannot load the float16 "
                                 f"model ({str(exc).splitlines()[0]})") from None
            blocked.append(missing.group(1))
    return QuantizeResult({"mode": "fp16", "keep_io_types": True,
                           "kept_float32": sorted(blocked)})


@contextlib.contextmanager
def _tool_errors(tool: str) -> Iterator[None]:
    """Turn a failure inside ONNX Runtime's tool into a ConversionError naming it."""
    try:
        yield
    except FerryError:
        raise
    except Exception as exc:  # the tools raise anything: ValueError, ORT's own, KeyError
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"ONNX Runtime's {tool} failed on this model: {first}") from None


def _check_changed(dst: Path, mode: str, marks: tuple[str, ...]) -> None:
    ops = {node.op_type for node in onnx.load(str(dst), load_external_data=False).graph.node}
    if not ops & set(marks):
        raise InputError(f"--quantize {mode}: ONNX Runtime quantized none of the model's "
                         f"operators ({', '.join(sorted(ops))})")
