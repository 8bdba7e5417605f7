"""The built-in transforms a pipeline step may name: pure numpy, checked before they run.

Each transform is made from its step's options (:func:`make_transform`), works out the
datatype and shape of its outputs from those of its inputs when the pipeline is validated
(:meth:`Transform.ports`), and then runs on arrays (``transform(arrays)``).

============== ======= ===================================================================
name           inputs  outputs
============== ======= ===================================================================
softmax        1       ``output``: softmax along ``axis`` (default -1)
argmax         1       ``index`` (INT64); ``label`` (BYTES) with ``labels``
top_k          1       ``indices`` (INT64), ``scores``; ``labels`` (BYTES) with ``labels``
scale          1       ``output`` = x * ``factor`` + ``offset``
normalize      1       ``output``: x divided by its ``norm`` (l2, l1, max) along the last axis
cast           1       ``output`` in ``datatype``
select         1       ``output``: ``column`` (that axis dropped) or ``columns`` of the last axis
concatenate    1+      ``output``: joined along ``axis`` (default -1)
average        2+      ``output``: the mean of its inputs (classifiers sharing a label set)
weighted_average 2+    ``output``: the mean weighted by ``weights``
vote           2+      ``index`` (INT64): majority vote of class scores or class indices;
                       ``label`` with ``labels``
============== ======= ===================================================================

``labels`` is a list of class names, or ``true`` for the labels the input carries (those of
the classifiers that feed it, which must agree).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ferry.errors import ArtifactError, InputError
from ferry.signature import DATATYPES, format_shape

__all__ = ["TRANSFORMS", "Port", "Transform", "make_transform", "merge_shapes"]

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Port:
    """The datatype and shape of one value flowing along an edge, and its class labels."""

    datatype: str
    shape: tuple[int, ...]
    labels: tuple[str, ...] | None = None

    def describe(self) -> str:
        """``FP32 with shape [-1, 10]``."""
        return f"{self.datatype} with shape {format_shape(self.shape)}"


def merge_shapes(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    """The most specific shape fitting both (``-1`` matches any size); None if they clash."""
    if len(a) != len(b):
        return None
    merged = []
    for x, y in zip(a, b, strict=True):
        if x == -1:
            merged.append(y)
        elif y in (-1, x):
            merged.append(x)
        else:
            return None
    return tuple(merged)


_FLOATS = ("FP16", "FP32", "FP64")
_NUMBERS = (*_FLOATS, "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


class Transform(abc.ABC):
    """One built-in transform with its options; see the module's table."""

    name: ClassVar[str]
    #: Allowed option keys and how many inputs it takes (min, max; None: any number).
    options_allowed: ClassVar[tuple[str, ...]] = ()
    arity: ClassVar[tuple[int, int | None]] = (1, 1)

    def __init__(self, options: dict[str, Any], what: str) -> None:
        self.what = what
        unknown = sorted(set(options) - set(self.options_allowed))
        if unknown:
            allowed = ", ".join(self.options_allowed) or "none"
            raise ArtifactError(f"{what}: unknown option {unknown[0]!r} for transform "
                                f"{self.name!r} (options: {allowed})")
        self.options = options

    def ports(self, inputs: list[Port]) -> dict[str, Port]:
        """The outputs' ports, from the inputs' (validation).

        Raises:
            ArtifactError: the inputs do not fit this transform (the message says why).
        """
        low, high = self.arity
        if len(inputs) < low or (high is not None and len(inputs) > high):
            wanted = str(low) if high == low else f"at least {low}"
            raise ArtifactError(f"{self.what}: transform {self.name!r} takes {wanted} "
                                f"input(s), {len(inputs)} wired")
        return self._ports(inputs)

    @abc.abstractmethod
    def _ports(self, inputs: list[Port]) -> dict[str, Port]: ...

    @abc.abstractmethod
    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        """Run on concrete arrays (already of the ports' datatypes)."""

    # -- helpers for subclasses

    def _refuse(self, text: str) -> ArtifactError:
        return ArtifactError(f"{self.what}: transform {self.name!r}: {text}")

    def _need(self, port: Port, kinds: tuple[str, ...], what: str, rank: int = 1) -> None:
        if port.datatype not in kinds:
            raise self._refuse(f"needs {what}, got {port.describe()}")
        if len(port.shape) < rank:
            raise self._refuse(f"needs at least {rank} dimension(s), got {port.describe()}")

    def _labels(self, port: Port) -> tuple[str, ...] | None:
        """The labels option resolved against the input (None when not asked for)."""
        given = self.options.get("labels")
        if given is None or given is False:
            return None
        if given is True:
            if port.labels is None:
                raise self._refuse("labels = true, but its input carries no class labels "
                                   "(give them as a list)")
            labels = port.labels
        elif isinstance(given, list) and given and all(isinstance(x, str) for x in given):
            labels = tuple(given)
        else:
            raise self._refuse(f"labels must be a list of strings or true, got {given!r:.60}")
        classes = port.shape[-1] if port.shape else -1
        if classes not in (-1, len(labels)):
            raise self._refuse(f"{len(labels)} labels for {classes} classes")
        return labels

    def _axis(self, port: Port) -> int:
        axis = self.options.get("axis", -1)
        if not isinstance(axis, int) or isinstance(axis, bool) \
                or not -len(port.shape) <= axis < len(port.shape):
            raise self._refuse(f"axis {axis!r} is out of range for {port.describe()}")
        return axis


def _shared(transform: Transform, inputs: list[Port]) -> Port:
    """The one port all inputs fit (same datatype and shape), with their shared labels."""
    first = inputs[0]
    shape: tuple[int, ...] | None = first.shape
    for other in inputs[1:]:
        if other.datatype != first.datatype:
            raise transform._refuse(f"its inputs differ in datatype ({first.describe()} vs "
                                    f"{other.describe()})")
        shape = merge_shapes(shape or (), other.shape)
        if shape is None:
            raise transform._refuse(f"its inputs differ in shape ({first.describe()} vs "
                                    f"{other.describe()})")
    labelled = [p.labels for p in inputs if p.labels is not None]
    if any(labels != labelled[0] for labels in labelled):
        raise transform._refuse(
            "its classifiers do not share a label set "
            f"({list(labelled[0])!r:.60} vs {next(x for x in labelled if x != labelled[0])!r:.60})")
    return Port(first.datatype, shape or (), labelled[0] if labelled else None)


def _label_array(labels: tuple[str, ...], index: Array) -> Array:
    table = np.empty(len(labels), dtype=object)
    table[:] = [label.encode("utf-8") for label in labels]
    return table[index]


class Softmax(Transform):
    name = "softmax"
    options_allowed = ("axis",)

    def _ports(self, inputs: list[Port]) -> dict[str, Port]:
        port = inputs[0]
        self._need(port, _FLOATS, "floating-point scores")
        self.axis = self._axis(port)
        return {"output": port}

    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        x = arrays[0]
        shifted = np.exp(x - x.max(axis=self.axis, keepdims=True))
        return {"output": shifted / shifted.sum(axis=self.axis, keepdims=True)}


class Argmax(Transform):
    name = "argmax"
    options_allowed = ("labels",)

    def _ports(self, inputs: list[Port]) -> dict[str, Port]:
        port = inputs[0]
        self._need(port, _NUMBERS, "numbers")
        self.labels = self._labels(port)
        out = {"index": Port("INT64", port.shape[:-1])}
        if self.labels is not None:
            out["label"] = Port("BYTES", port.shape[:-1])
        return out

    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        index = np.argmax(arrays[0], axis=-1).astype(np.int64)
        out = {"index": index}
        if self.labels is not None:
            out["label"] = _label_array(self.labels, index)
        return out


class TopK(Transform):
    name = "top_k"
    options_allowed = ("k", "labels")

    def _ports(self, inputs: list[Port]) -> dict[str, Port]:
        port = inputs[0]
        self._need(port, _NUMBERS, "numbers")
        k = self.options.get("k")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise self._refuse(f"k must be a whole number >= 1, got {k!r}")
        if port.shape[-1] != -1 and k > port.shape[-1]:
            raise self._refuse(f"k = {k} is more than the {port.shape[-1]} classes of its "
                               "input")
        self.k = k
        self.labels = self._labels(port)
        shape = (*port.shape[:-1], k)
        out = {"indices": Port("INT64", shape), "scores": Port(port.datatype, shape)}
        if self.labels is not None:
            out["labels"] = Port("BYTES", shape)
        return out

    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        x = arrays[0]
        if self.k > x.shape[-1]:
            raise InputError(f"top_k: k = {self.k} is more than the {x.shape[-1]} classes "
                             "given")
        indices = np.argsort(-x, axis=-1, kind="stable")[..., :self.k].astype(np.int64)
        out = {"indices": indices, "scores": np.take_along_axis(x, indices, axis=-1)}
        if self.labels is not None:
            out["labels"] = _label_array(self.labels, indices)
        return out


class Scale(Transform):
    name = "scale"
    options_allowed = ("factor", "offset")

    def _ports(self, inputs: list[Port]) -> dict[str, Port]:
        port = inputs[0]
        self._need(port, _FLOATS, "floating-point values (cast them first)", rank=0)
        values = [self.options.get("factor", 1.0), self.options.get("offset", 0.0)]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise self._refuse(f"factor and offset must be numbers, got {values!r:.60}")
        self.factor, self.offset = (float(v) for v in values)
        return {"output": port}

    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        x = arrays[0]
        return {"output": (x * x.dtype.type(self.factor) + x.dtype.type(self.offset))}


class Normalize(Transform):
    name = "normalize"
    options_allowed = ("norm",)

    def _ports(self, inputs: list[Port]) -> dict[str, Port]:
        port = inputs[0]
        self._need(port, _FLOATS, "floating-point values (cast them first)")
        self.norm = self.options.get("norm", "l2")
        if self.norm not in ("l1", "l2", "max"):
            raise self._refuse(f"norm must be 'l1', 'l2' or 'max', got {self.norm!r:.40}")
        return {"output": port}

    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        x = arrays[0]
        if self.norm == "l2":
            size = np.sqrt((x * x).sum(axis=-1, keepdims=True))
        elif self.norm == "l1":
            size = np.abs(x).sum(axis=-1, keepdims=True)
        else:
            size = np.abs(x).max(axis=-1, keepdims=True)
        return {"output": x / np.where(size == 0, 1, size).astype(x.dtype)}


class Cast(Transform):
    name = "cast"
    options_allowed = ("datatype",)

    def _ports(self, inputs: list[Port]) -> dict[str, Port]:
        port = inputs[0]
        self._need(port, (*_NUMBERS, "BOOL"), "numbers", rank=0)
        datatype = self.options.get("datatype")
        if datatype not in DATATYPES or datatype == "BYTES":
            raise self._refuse(f"datatype must be one of {', '.join(_NUMBERS)}, BOOL; got "
                               f"{datatype!r:.40}")
        self.dtype = DATATYPES[datatype]
        return {"output": Port(datatype, port.shape, port.labels)}

    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        return {"output": arrays[0].astype(self.dtype)}


class Select(Transform):
    name = "select"
    options_allowed = ("column", "columns")

    def _ports(self, inputs: list[Port]) -> dict[str, Port]:
        port = inputs[0]
        self._need(port, (*_NUMBERS, "BOOL", "BYTES"), "a tensor")
        has_one, has_many = "column" in self.options, "columns" in self.options
        if has_one == has_many:
            raise self._refuse("give column = N (that axis is dropped) or columns = [N, ...]")
        chosen = [self.options["column"]] if has_one else self.options["columns"]
        width = port.shape[-1]
        if not isinstance(chosen, list) or not chosen or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in chosen):
            raise self._refuse(f"columns must be whole numbers >= 0, got {chosen!r:.60}")
        if width != -1 and max(chosen) >= width:
            raise self._refuse(f"column {max(chosen)} is out of range: its input has {width} "
                               "columns")
        self.columns = chosen
        self.drop = has_one
        shape = port.shape[:-1] if has_one else (*port.shape[:-1], len(chosen))
        return {"output": Port(port.datatype, shape)}

    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        x = arrays[0]
        if max(self.columns) >= x.shape[-1]:
            raise InputError(f"select: column {max(self.columns)} is out of range for "
                             f"{x.shape[-1]} columns")
        if self.drop:
            return {"output": np.ascontiguousarray(x[..., self.columns[0]])}
        return {"output": np.ascontiguousarray(x[..., self.columns])}


class Concatenate(Transform):
    name = "concatenate"
    options_allowed = ("axis",)
    arity = (1, None)

    def _ports(self, inputs: list[Port]) -> dict[str, Port]:
        first = inputs[0]
        self.axis = self._axis(first)
        axis = self.axis % len(first.shape)
        shape = list(first.shape)
        for other in inputs[1:]:
            if other.datatype != first.datatype or len(other.shape) != len(first.shape):
                raise self._refuse(f"its inputs differ ({first.describe()} vs "
                                   f"{other.describe()})")
            rest = merge_shapes([d for i, d in enumerate(shape) if i != axis],
                                [d for i, d in enumerate(other.shape) if i != axis])
            if rest is None:
                raise self._refuse(f"its inputs differ off axis {self.axis} "
                                   f"({first.describe()} vs {other.describe()})")
            joined = -1 if -1 in (shape[axis], other.shape[axis]) \
                else shape[axis] + other.shape[axis]
            shape = [*rest[:axis], joined, *rest[axis:]]
        return {"output": Port(first.datatype, tuple(shape))}

    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        return {"output": np.concatenate(arrays, axis=self.axis)}


class Average(Transform):
    name = "average"
    arity = (2, None)

    def _ports(self, inputs: list[Port]) -> dict[str, Port]:
        port = _shared(self, inputs)
        self._need(port, _FLOATS, "floating-point scores", rank=0)
        return {"output": port}

    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        total = arrays[0].copy()
        for other in arrays[1:]:
            total += other
        return {"output": total / total.dtype.type(len(arrays))}


class WeightedAverage(Transform):
    name = "weighted_average"
    options_allowed = ("weights",)
    arity = (2, None)

    def _ports(self, inputs: list[Port]) -> dict[str, Port]:
        port = _shared(self, inputs)
        self._need(port, _FLOATS, "floating-point scores", rank=0)
        weights = self.options.get("weights")
        if not isinstance(weights, list) or len(weights) != len(inputs) or not all(
                isinstance(w, int | float) and not isinstance(w, bool) and w >= 0
                for w in weights) or not sum(weights):
            raise self._refuse(f"weights must be {len(inputs)} numbers >= 0 (one per input, "
                               f"not all 0), got {weights!r:.60}")
        total = float(sum(weights))
        self.weights = [float(w) / total for w in weights]
        return {"output": port}

    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        kind = arrays[0].dtype.type
        total = arrays[0] * kind(self.weights[0])
        for weight, other in zip(self.weights[1:], arrays[1:], strict=True):
            total += other * kind(weight)
        return {"output": total}


class Vote(Transform):
    """Majority vote: each input votes for its highest-scoring class (or gives class ids).

    Ties go to the class with the higher summed score (class scores), else the lower id.
    """

    name = "vote"
    options_allowed = ("labels",)
    arity = (2, None)

    def _ports(self, inputs: list[Port]) -> dict[str, Port]:
        port = _shared(self, inputs)
        self.scores = port.datatype in _FLOATS
        if self.scores:
            self._need(port, _FLOATS, "class scores")
            shape = port.shape[:-1]
        else:
            self._need(port, ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
                              "UINT64"), "class scores or class ids", rank=0)
            shape = port.shape
        self.labels = self._labels(port) if self.scores else self._id_labels()
        out = {"index": Port("INT64", shape)}
        if self.labels is not None:
            out["label"] = Port("BYTES", shape)
        return out

    def _id_labels(self) -> tuple[str, ...] | None:
        given = self.options.get("labels")
        if given is None:
            return None
        if not isinstance(given, list) or not all(isinstance(x, str) for x in given):
            raise self._refuse("voting on class ids: labels must be a list of strings")
        return tuple(given)

    def __call__(self, arrays: list[Array]) -> dict[str, Array]:
        if self.scores:
            classes = arrays[0].shape[-1]
            picks = [np.argmax(a, axis=-1) for a in arrays]
            tie = sum(a.astype(np.float64) for a in arrays) / (len(arrays) + 1)
        else:
            picks = [a.astype(np.int64) for a in arrays]
            if any(int(p.min(initial=0)) < 0 for p in picks):
                    raise InputError("vote: a class id is negative")
            classes = max(int(p.max(initial=0)) for p in picks) + 1
            tie = None
        counts = np.zeros((*picks[0].shape, classes), dtype=np.float64)
        for pick in picks:
            np.put_along_axis(counts, pick[..., None],
                              np.take_along_axis(counts, pick[..., None], axis=-1) + 1, axis=-1)
        if tie is not None:
            counts += tie
        index = np.argmax(counts, axis=-1).astype(np.int64)
        out = {"index": index}
        if self.labels is not None:
            if index.size and int(index.max()) >= len(self.labels):
                    raise InputError(f"vote: class {int(index.max())} has no label "
                                 f"({len(self.labels)} labels)")
            out["label"] = _label_array(self.labels, index)
        return out


#: Transform name -> its class.
TRANSFORMS: dict[str, Callable[[dict[str, Any], str], Transform]] = {
    cls.name: cls for cls in (Softmax, Argmax, TopK, Scale, Normalize, Cast, Select,
                              Concatenate, Average, WeightedAverage, Vote)
}


def make_transform(name: str, options: dict[str, Any], what: str) -> Transform:
    """The transform ``name`` with ``options``; ``what`` names the step in messages.

    Raises:
        ArtifactError: no such transform (the message lists them), or an unknown option.
    """
    factory = TRANSFORMS.get(name)
    if factory is None:
        raise ArtifactError(f"{what}: unknown transform {name!r} (transforms: "
                            f"{', '.join(sorted(TRANSFORMS))})")
    return factory(options, what)
