"""Tensor specs: the contract between a model and everything that calls it.

A model's :class:`Signature` lists its inputs and outputs as :class:`TensorSpec` values with
the Open Inference Protocol's datatype names (``FP32``, ``BYTES`` ...) and shapes where ``-1``
marks a variable dimension. Every request is checked against it before it reaches a runtime,
so a wrong tensor is answered with a message that names it, never with a runtime crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ferry.errors import InputError, NotFoundError, quote_name

__all__ = [
    "DATATYPES",
    "MAX_DIM",
    "MAX_ELEMENTS",
    "MAX_RANK",
    "Signature",
    "TensorSpec",
    "as_array",
    "check_shape",
    "datatype_of",
    "format_shape",
    "numpy_dtype",
    "values_as",
]

#: V2 datatype name -> numpy dtype. BYTES elements are Python ``bytes`` in object arrays.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

_BY_NUMPY: dict[np.dtype[Any], str] = {v: k for k, v in DATATYPES.items()}

# Which numpy kinds of incoming data may be cast to a datatype without losing meaning.
# Floats are not accepted for integer tensors (1.7 would silently become 1).
_ACCEPTED_KINDS: dict[str, str] = {"b": "b", "u": "iu", "i": "iu", "f": "iuf", "O": "USO"}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """Return the numpy dtype of a V2 datatype name.

    Raises:
        InputError: the name is not a V2 datatype (the message lists the valid ones).
    """
    try:
        return DATATYPES[datatype]
    except KeyError:
        raise InputError(
            f"unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}"
        ) from None


def datatype_of(dtype: np.dtype[Any] | type) -> str:
    """Return the V2 datatype name of a numpy dtype (strings and bytes map to BYTES).

    Raises:
        InputError: numpy has the dtype but V2 has no datatype for it (complex, datetime...).
    """
    dt = np.dtype(dtype)
    if dt.kind in "USO":
        return "BYTES"
    try:
        return _BY_NUMPY[dt.newbyteorder("=")]
    except KeyError:
        raise InputError(f"numpy dtype {dt} has no Open Inference Protocol datatype") from None


def format_shape(shape: Iterable[int]) -> str:
    """Format a shape the way messages show it: ``[-1, 64]``."""
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


# Bounds on the shape a request declares, checked before anything is allocated or reshaped.
# numpy refuses (ValueError "array is too big") a shape whose non-zero dimensions multiply
# past what its int64 byte count holds, even when another dimension is 0 and the array is
# empty; these bounds keep every shape a request may declare far inside that.

#: The largest dimension a request's tensor may declare: INT32's maximum, the index type of
#: most runtimes, and already more than any request body the server reads could fill.
MAX_DIM = 2**31 - 1
#: The most elements a request's tensor may declare, a dimension of 0 counted as 1: so a
#: zero-element tensor of shape ``[0, 2**62]`` is refused like the huge one it describes.
MAX_ELEMENTS = 2**31 - 1
#: The most dimensions a tensor may have (numpy 2's ``NPY_MAXDIMS``).
MAX_RANK = 64


def check_shape(what: str, shape: Sequence[int]) -> int:
    """Check a request's concrete shape against the bounds above; return its element count.

    Args:
        what: how messages name the tensor (``"input 'x'"``).
        shape: the dimensions as the request gave them.

    Raises:
        InputError: too many dimensions, a negative one, one above :data:`MAX_DIM`, or more
            than :data:`MAX_ELEMENTS` elements (zero dimensions counted as one).
    """
    if len(shape) > MAX_RANK:
        raise InputError(f"{what}: shape has {len(shape)} dimensions; at most {MAX_RANK} "
                         "are possible")
    span = 1
    for d in shape:
        if d < 0:
            raise InputError(f"{what}: shape {format_shape(shape)} has a negative dimension; "
                             "every dimension of a concrete tensor must be >= 0")
        if d > MAX_DIM:
            raise InputError(f"{what}: dimension {d} of shape {format_shape(shape)} is above "
                             f"the maximum of {MAX_DIM}")
        span *= d or 1
    if span > MAX_ELEMENTS:
        raise InputError(f"{what}: shape {format_shape(shape)} describes {span} elements "
                         f"(a dimension of 0 counted as 1); at most {MAX_ELEMENTS} are allowed")
    return 0 if 0 in shape else span


class TensorSpec(BaseModel):
    """One named tensor of a model: its V2 datatype and shape (``-1`` = variable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    datatype: str
    shape: tuple[int, ...]

    @field_validator("name")
    @classmethod
    def _name_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("tensor name must not be empty")
        return value

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"unknown datatype {value!r}; expected one of {', '.join(DATATYPES)}")
        return value

    @field_validator("shape")
    @classmethod
    def _dims_valid(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < -1 for d in value):
            raise ValueError(f"shape {format_shape(value)}: dimensions must be >= 0 or -1")
        return value

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of this tensor."""
        return DATATYPES[self.datatype]

    def describe(self) -> str:
        """Describe the spec for messages: ``FP32 with shape [-1, 64]``."""
        return f"{self.datatype} with shape {format_shape(self.shape)}"

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        """Whether a concrete shape fits this spec (same rank, fixed dims equal)."""
        want = self.shape
        if len(shape) != len(want):
            return False
        # A loop, not all(<generator>): this runs for every request, and the generator
        # costs more than the comparisons.
        for w, got in zip(want, shape, strict=True):  # noqa: SIM110
            if w != got and w != -1:
                return False
        return True

    def check(self, array: np.ndarray[Any, Any], *, role: str = "input") -> None:
        """Check one concrete array against this spec.

        Raises:
            InputError: ``input 'x': expected FP32 with shape [-1, 64], got shape [3, 63]``.
        """
        got_type = datatype_of(array.dtype) if array.dtype.kind != "O" else "BYTES"
        if got_type != self.datatype:
            raise InputError(
                f"{role} {self.name!r}: expected {self.describe()}, "
                f"got {got_type} with shape {format_shape(array.shape)}"
            )
        if not self.accepts_shape(array.shape):
            raise InputError(
                f"{role} {self.name!r}: expected {self.describe()}, "
                f"got shape {format_shape(array.shape)}"
            )


class Signature(BaseModel):
    """A model's inputs and outputs, in the order the model declares them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @model_validator(mode="after")
    def _names_unique(self) -> Signature:
        for role, specs in (("input", self.inputs), ("output", self.outputs)):
            if not specs:
                raise ValueError(f"a signature needs at least one {role}")
            names = [s.name for s in specs]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {role} names: {', '.join(dupes)}")
        return self

    @property
    def input_names(self) -> list[str]:
        """Input names in declaration order."""
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        """Output names in declaration order."""
        return [s.name for s in self.outputs]

    @property
    def batch_axis(self) -> bool:
        """True when every input and output has a variable first dimension to batch along."""
        return all(s.shape and s.shape[0] == -1 for s in (*self.inputs, *self.outputs))

    def input(self, name: str) -> TensorSpec:
        """Return the input called ``name``.

        Raises:
            NotFoundError: no such input; the message lists the inputs there are.
        """
        return _lookup(self.inputs, name, "input")

    def output(self, name: str) -> TensorSpec:
        """Return the output called ``name``.

        Raises:
            NotFoundError: no such output; the message lists the outputs there are.
        """
        return _lookup(self.outputs, name, "output")

    def check_inputs(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> None:
        """Check a dict of arrays against the inputs: names, dtypes, shapes, batch sizes.

        Raises:
            InputError: an input is missing, unknown, or of the wrong dtype or shape, or the
                inputs disagree on the batch size.
        """
        if self._fits(inputs):
            return
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise InputError(
                f"unknown input {quote_name(unknown[0])}; the model's inputs are "
                f"{', '.join(repr(n) for n in self.input_names)}"
            )
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise InputError(
                f"missing input {missing[0]!r}: expected {self.input(missing[0]).describe()}"
            )
        for spec in self.inputs:
            spec.check(inputs[spec.name])
        if self.batch_axis and len(self.inputs) > 1:
            sizes = {name: int(inputs[name].shape[0]) for name in self.input_names}
            if len(set(sizes.values())) > 1:
                listed = ", ".join(f"{n!r}: {b}" for n, b in sizes.items())
                raise InputError(f"inputs disagree on the batch size ({listed})")

    def _fits(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> bool:
        """The common case, checked quickly: every input given, right dtype, right shape."""
        specs = self.inputs
        if len(inputs) != len(specs):
            return False
        batch = -1
        for spec in specs:
            array = inputs.get(spec.name)
            if (array is None or array.dtype != DATATYPES[spec.datatype]
                    or not spec.accepts_shape(array.shape)):
                return False
            if len(specs) > 1 and spec.shape and spec.shape[0] == -1:
                if batch not in (-1, array.shape[0]):
                    return False
                batch = array.shape[0]
        return True

    def check_output_names(self, names: Iterable[str]) -> None:
        """Check that each requested output exists.

        Raises:
            InputError: an output name is unknown; the message lists the outputs there are.
        """
        for name in names:
            if name not in self.output_names:
                raise InputError(
                    f"unknown output {quote_name(name)}; the model's outputs are "
                    f"{', '.join(repr(n) for n in self.output_names)}"
                )


def _lookup(specs: Sequence[TensorSpec], name: str, role: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise NotFoundError(
        f"unknown {role} {quote_name(name)}; the model's {role}s are "
        f"{', '.join(repr(s.name) for s in specs)}"
    )


def as_array(spec: TensorSpec, data: Any, *, role: str = "input") -> np.ndarray[Any, Any]:
    """Turn decoded data (nested lists, scalars, an array) into an array of the spec's dtype.

    Values are converted only when no meaning is lost: integers into float tensors, yes;
    floats into integer tensors, or strings into numbers, no. Integers out of the range of
    the target type are refused rather than wrapped around. The shape is not checked here;
    :meth:`TensorSpec.check` does that.

    Raises:
        InputError: ragged lists, mixed types, or values the datatype cannot hold.
    """
    return values_as(spec.name, spec.datatype, data, role=role)


def values_as(name: str, datatype: str, data: Any, *, role: str = "input"
              ) -> np.ndarray[Any, Any]:
    """:func:`as_array` for a tensor known by name and V2 datatype (no spec object needed).

    Raises:
        InputError: as :func:`as_array`.
    """
    target = DATATYPES[datatype]
    try:
        array = np.asarray(data)
    except ValueError as exc:  # ragged nesting: numpy refuses inhomogeneous shapes
        raise InputError(
            f"{role} {quote_name(name)}: data is not a rectangular array ({exc})") from None
    if array.dtype == target:
        return array
    kind = array.dtype.kind
    if array.size == 0:
        return array.astype(target)
    if kind not in _ACCEPTED_KINDS[target.kind]:
        raise InputError(
            f"{role} {quote_name(name)}: expected {datatype} values, got {_describe_kind(array)}"
        )
    if target.kind == "O":
        if kind == "U":
            # numpy's fixed-width str dtype drops trailing NULs ("a\x00" -> "a"): take the
            # strings as the objects they are (the nesting is rectangular: checked above).
            array = np.asarray(data, dtype=object).reshape(array.shape)
        return _as_bytes_array(array)
    if target.kind in "iu" and kind in "iu":
        info = np.iinfo(target)
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            raise InputError(
                f"{role} {quote_name(name)}: value {low if low < info.min else high} is out of "
                f"range for {datatype} [{info.min}, {info.max}]"
            )
    return array.astype(target)


def _describe_kind(array: np.ndarray[Any, Any]) -> str:
    names = {"b": "booleans", "i": "integers", "u": "integers", "f": "floating-point numbers",
             "U": "strings", "S": "bytes", "O": "mixed or non-numeric values", "c": "complex"}
    return names.get(array.dtype.kind, f"values of numpy dtype {array.dtype}")


def _as_bytes_array(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    out = np.empty(array.shape, dtype=object)
    flat_in, flat_out = array.reshape(-1), out.reshape(-1)
    for i, value in enumerate(flat_in):
        if isinstance(value, bytes):
            flat_out[i] = value
        elif isinstance(value, str):
            flat_out[i] = value.encode("utf-8")
        else:
            raise InputError(f"BYTES tensor element {i} is {type(value).__name__}, not a string")
    return out
