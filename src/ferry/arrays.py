"""Named input arrays from files: ``.npy``, ``.npz`` and JSON, as users hand them over.

Used by ``ferry predict --input`` and ``ferry import --samples``. JSON may take any of the
shapes people already have at hand:

* an Open Inference Protocol request: ``{"inputs": [{"name", "shape", "datatype", "data"}]}``
* named tensors: ``{"inputs": {"x": [[...]]}}`` or just ``{"x": [[...]]}``
* the seed's ``/predict`` body ``{"data": [[...]]}`` or TF Serving's ``{"instances": [...]}``
* a bare (nested) list, for a model with one input
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import InputError
from ferry.signature import Signature, TensorSpec, as_array, check_shape, format_shape

__all__ = ["parse_arrays", "read_arrays"]

_NPY_MAGIC = b"\x93NUMPY"


def read_arrays(path: Path, signature: Signature) -> dict[str, np.ndarray[Any, Any]]:
    """Read named arrays for ``signature`` from a file, converted to the declared dtypes.

    Raises:
        InputError: unreadable file, unknown layout, or data that does not fit the inputs.
    """
    if path.is_dir():
        raise InputError(f"{path} is a directory; expected a .json, .npy or .npz file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"input file {str(path)!r} does not exist") from None
    return parse_arrays(data, signature, origin=path.name)


def parse_arrays(data: bytes, signature: Signature, *, origin: str = "stdin"
                 ) -> dict[str, np.ndarray[Any, Any]]:
    """Parse the bytes of a ``.npy``, ``.npz`` or JSON document (detected from content).

    Raises:
        InputError: as :func:`read_arrays`.
    """
    if not data.strip():
        raise InputError(f"{origin}: no input data (the file is empty)")
    if data.startswith(_NPY_MAGIC):
        return _single(signature, _load_numpy(data, origin), origin)
    if data.startswith(b"PK\x03\x04"):
        return _from_npz(data, signature, origin)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{origin}: not JSON, .npy or .npz ({exc})") from None
    return _from_json(doc, signature, origin)


def _load_numpy(data: bytes, origin: str) -> np.ndarray[Any, Any]:
    try:
        array: np.ndarray[Any, Any] = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{origin}: unreadable .npy data ({exc})") from None
    return array


def _from_npz(data: bytes, signature: Signature, origin: str) -> dict[str, np.ndarray[Any, Any]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{origin}: unreadable .npz archive ({exc})") from None
    return _named(signature, arrays, origin)


def _from_json(doc: Any, signature: Signature, origin: str) -> dict[str, np.ndarray[Any, Any]]:
    if isinstance(doc, list):
        return _single(signature, doc, origin)
    if not isinstance(doc, dict):
        raise InputError(f"{origin}: expected a JSON object or list, got {type(doc).__name__}")
    inputs = doc.get("inputs")
    if isinstance(inputs, list) and all(isinstance(t, dict) and "name" in t for t in inputs):
        return _from_v2(inputs, signature, origin)
    if isinstance(inputs, dict):
        return _named(signature, inputs, origin)
    for key in ("data", "instances"):
        if key in doc:
            return _single(signature, doc[key], origin)
    if doc and set(doc) <= set(signature.input_names):
        return _named(signature, doc, origin)
    raise InputError(
        f"{origin}: no inputs found; give {{\"inputs\": {{name: data}}}}, a V2 request, "
        f"{{\"data\": [...]}} or a list (inputs: {', '.join(signature.input_names)})"
    )


def _from_v2(tensors: list[dict[str, Any]], signature: Signature, origin: str
             ) -> dict[str, np.ndarray[Any, Any]]:
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for tensor in tensors:
        spec = signature.input(str(tensor["name"]))
        if "datatype" in tensor and tensor["datatype"] != spec.datatype:
            raise InputError(
                f"{origin}: input {spec.name!r}: expected datatype {spec.datatype}, "
                f"got {tensor['datatype']}"
            )
        array = as_array(spec, tensor.get("data", []))
        if "shape" in tensor:
            shape = [int(d) for d in tensor["shape"]]
            check_shape(f"{origin}: input {spec.name!r}", shape)  # before numpy sees it
            if int(np.prod(shape)) != array.size:
                raise InputError(
                    f"{origin}: input {spec.name!r}: shape {format_shape(shape)} needs "
                    f"{int(np.prod(shape))} values, got {array.size}"
                )
            array = array.reshape(shape)
        arrays[spec.name] = array
    return arrays


def _named(signature: Signature, values: dict[str, Any], origin: str
           ) -> dict[str, np.ndarray[Any, Any]]:
    return {name: _batched(signature.input(name), value) for name, value in values.items()}


def _batched(spec: TensorSpec, value: Any) -> np.ndarray[Any, Any]:
    """Convert, adding the batch axis when one example is given without it."""
    array = as_array(spec, value)
    if spec.shape and spec.shape[0] == -1 and array.ndim == len(spec.shape) - 1:
        array = array[np.newaxis, ...]
    return array


def _single(signature: Signature, value: Any, origin: str) -> dict[str, np.ndarray[Any, Any]]:
    if len(signature.inputs) != 1:
        raise InputError(
            f"{origin}: the model has {len(signature.inputs)} inputs "
            f"({', '.join(signature.input_names)}); name each one: {{\"inputs\": {{name: data}}}}"
        )
    spec = signature.inputs[0]
    return {spec.name: _batched(spec, value)}
