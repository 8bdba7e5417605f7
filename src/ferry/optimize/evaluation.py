"""The data an optimization is judged on: eval inputs with optional labels, and calibration rows.

An eval file is anything ``--samples`` reads (``.npy``, ``.npz``, JSON); an ``.npz`` may
also carry the true classes, as ``x``/``y`` (one-input models) or as the named inputs plus
``labels``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferry.arrays import read_arrays
from ferry.errors import FerryError, InputError
from ferry.runtimes import Arrays
from ferry.signature import Signature, as_array

__all__ = ["EvalData", "read_eval", "read_samples"]

_LABEL_KEYS = ("y", "labels")


@dataclass(frozen=True)
class EvalData:
    """Named input arrays, the true class of each row (when known), and where they came from."""

    inputs: Arrays
    labels: np.ndarray[Any, Any] | None
    origin: str

    @property
    def rows(self) -> int:
        """Number of rows (the batch axis of the first input)."""
        return int(next(iter(self.inputs.values())).shape[0])


def read_samples(path: Path, signature: Signature, *, flag: str) -> Arrays:
    """Read sample inputs for ``signature`` (calibration data), checked, with rows.

    Raises:
        InputError: unreadable, empty, or not fitting the signature; names ``flag``.
    """
    return read_eval(path, signature, flag=flag).inputs


def read_eval(path: Path, signature: Signature, *, flag: str = "--eval") -> EvalData:
    """Read an eval file (see the module docstring) and check it against ``signature``.

    Raises:
        InputError: unreadable, empty, no rows, labels that do not match the rows, or
            inputs whose names, shapes or datatypes do not fit the signature.
    """
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise InputError(f"{flag} {path}: no such file") from None
    labels: np.ndarray[Any, Any] | None = None
    try:
        if data.startswith(b"PK\x03\x04"):
            inputs, labels = _npz(data, signature, path.name)
        else:
            inputs = read_arrays(path, signature)
        signature.check_inputs(inputs)
    except FerryError as exc:
        raise InputError(f"{flag} {path.name}: {exc.message}") from None
    rows = {name: int(value.shape[0]) if value.ndim else 0 for name, value in inputs.items()}
    if not inputs or min(rows.values()) == 0:
        raise InputError(f"{flag} {path.name}: the file holds no rows")
    if labels is not None and labels.shape[:1] != (next(iter(rows.values())),):
        raise InputError(f"{flag} {path.name}: {labels.shape[0] if labels.ndim else 0} labels "
                         f"for {next(iter(rows.values()))} rows")
    return EvalData(inputs, labels, f"{next(iter(rows.values()))} rows of {path.name}")


def _npz(data: bytes, signature: Signature, origin: str
         ) -> tuple[Arrays, np.ndarray[Any, Any] | None]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{origin}: unreadable .npz archive ({exc})") from None
    labels = next((arrays.pop(k) for k in _LABEL_KEYS if k in arrays
                   and k not in signature.input_names), None)
    if "x" in arrays and "x" not in signature.input_names and len(signature.inputs) == 1:
        arrays[signature.inputs[0].name] = arrays.pop("x")
    unknown = sorted(set(arrays) - set(signature.input_names))
    if unknown:
        raise InputError(f"{origin}: no input named {unknown[0]!r} (inputs: "
                         f"{', '.join(signature.input_names)}; labels go in 'y' or 'labels')")
    inputs = {name: as_array(signature.input(name), value) for name, value in arrays.items()}
    if labels is not None and labels.dtype.kind not in "iu":
        raise InputError(f"{origin}: labels must be integer class ids, got {labels.dtype}")
    return inputs, labels
