"""Pruning of ONNX weight initializers with numpy: magnitude (unstructured) and structured.

* **Magnitude pruning** sets the smallest-magnitude ``fraction`` of each weight tensor (the
  weights of MatMul, Gemm and Conv) to zero. The model computes as much as before; it
  compresses better, and a sparse-aware runtime could skip the zeros.
* **Structured pruning** works on chains of dense layers: a MatMul/Gemm with constant
  weights, its bias Add, element-wise activations, then the next MatMul/Gemm. It drops the
  ``fraction`` of hidden units whose weights matter least (the product of the L2 norms of a
  unit's incoming column and outgoing row) and shrinks both layers, so the model really
  computes less. The model's inputs and outputs keep their shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ferry.errors import InputError

__all__ = ["DenseChain", "PruneResult", "dense_chains", "prune_magnitude", "prune_structured"]

#: Operators whose input 1 is a weight tensor that magnitude pruning may zero.
WEIGHT_OPS = frozenset({"MatMul", "Gemm", "Conv"})
#: Element-wise operators that may sit between two dense layers of a prunable chain.
ELEMENTWISE = frozenset({
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Softplus", "Softsign",
    "HardSigmoid", "HardSwish", "Gelu", "Identity", "Mish", "ThresholdedRelu",
})


@dataclass(frozen=True)
class PruneResult:
    """What a pruning step changed."""

    tensors: int
    parameters_before: int  # of the pruned layers
    parameters_after: int
    sparsity: float  # zeros / elements of the pruned tensors, after
    #: hidden tensor -> (units before, units after)
    units: dict[str, tuple[int, int]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the report."""
        if self.units:
            widths = ", ".join(f"{b}->{a}" for b, a in self.units.values())
            return (f"{len(self.units)} hidden layer(s) shrunk ({widths} units); parameters "
                    f"of the pruned layers {self.parameters_before} -> {self.parameters_after}")
        return (f"{self.tensors} weight tensor(s), {self.parameters_before} parameters, "
                f"sparsity {self.sparsity:.1%}")


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise InputError(f"--prune {fraction:g}: the fraction must be between 0 and 1 "
                         "(exclusive), e.g. --prune 0.5")


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {init.name: init for init in model.graph.initializer}


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _set(model: onnx.ModelProto, name: str, array: np.ndarray[Any, Any]) -> None:
    for init in model.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array(array, name))
            return
    raise KeyError(name)


def prune_magnitude(model: onnx.ModelProto, fraction: float) -> PruneResult:
    """Zero the smallest ``fraction`` of every MatMul/Gemm/Conv weight tensor, in place.

    Raises:
        InputError: the fraction is outside (0, 1), or the model has no such weights.
    """
    _check_fraction(fraction)
    inits = _initializers(model)
    names = sorted({
        node.input[1] for node in model.graph.node
        if node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in inits
        and inits[node.input[1]].data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)
        and len(inits[node.input[1]].dims) >= 2
    })
    if not names:
        raise InputError("the model has no prunable layers: no MatMul, Gemm or Conv with "
                         "floating-point weights stored in the model")
    total = zeros = 0
    for name in names:
        weights = numpy_helper.to_array(inits[name]).copy()
        count = int(fraction * weights.size)
        if count:
            cut = np.argpartition(np.abs(weights).ravel(), count - 1)[:count]
            weights.ravel()[cut] = 0
        _set(model, name, weights)
        total += weights.size
        zeros += int(np.count_nonzero(weights == 0))
    return PruneResult(tensors=len(names), parameters_before=total,
                       parameters_after=total - zeros, sparsity=zeros / total)


@dataclass(frozen=True)
class DenseChain:
    """Two dense layers joined by a hidden tensor of ``units`` units.

    ``first`` makes the hidden units (weights ``w1``, optional bias ``b1``), ``second``
    reads them (weights ``w2``). ``w1_rows`` / ``w2_rows`` say on which axis of the stored
    weights the hidden units lie (Gemm's ``transB`` flips it).
    """

    first: onnx.NodeProto
    second: onnx.NodeProto
    w1: str
    b1: str | None
    w2: str
    hidden: str
    units: int
    w1_axis: int
    w2_axis: int


def _dense_weight(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]
                  ) -> tuple[str, int, int] | None:
    """(weights, axis of the output units, axis of the input features), or None."""
    if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
        return None
    weight = inits.get(node.input[1])
    if weight is None or len(weight.dims) != 2 or weight.data_type != onnx.TensorProto.FLOAT:
        return None
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0):
        return None
    trans_b = int(attrs.get("transB", 0))
    return (node.input[1], 0 if trans_b else 1, 1 if trans_b else 0)


def dense_chains(model: onnx.ModelProto) -> list[DenseChain]:
    """Find the prunable dense-layer chains of a model (see the module docstring)."""
    inits = _initializers(model)
    consumers = _consumers(model)
    graph_outputs = {o.name for o in model.graph.output}
    used = {name: len(nodes) for name, nodes in consumers.items()}
    chains = []
    for node in model.graph.node:
        first = _dense_weight(node, inits)
        if first is None or used.get(first[0], 0) != 1:
            continue
        w1, out_axis, _ = first
        units = int(inits[w1].dims[out_axis])
        bias: str | None = None
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            bias = node.input[2]
            if bias not in inits or list(inits[bias].dims) != [units] or used[bias] != 1:
                continue
        tensor = node.output[0]
        second: onnx.NodeProto | None = None
        while tensor not in graph_outputs and len(consumers.get(tensor, [])) == 1:
            nxt = consumers[tensor][0]
            if nxt.op_type == "Add" and bias is None and node.op_type == "MatMul":
                other = nxt.input[1] if nxt.input[0] == tensor else nxt.input[0]
                if other in inits and list(inits[other].dims) == [units] and used[other] == 1:
                    bias, tensor = other, nxt.output[0]
                    continue
                break
            if nxt.op_type in ELEMENTWISE and nxt.input[0] == tensor and all(
                    name in inits for name in nxt.input[1:] if name):
                tensor = nxt.output[0]
                continue
            if nxt.input[0] == tensor and _dense_weight(nxt, inits) is not None:
                second = nxt
            break
        if second is None:
            continue
        w2, _, in_axis = _dense_weight(second, inits)  # type: ignore[misc]
        if used.get(w2, 0) != 1 or int(inits[w2].dims[in_axis]) != units or units < 2:
            continue
        chains.append(DenseChain(node, second, w1, bias, w2, tensor, units, out_axis, in_axis))
    return chains


def prune_structured(model: onnx.ModelProto, fraction: float) -> PruneResult:
    """Drop ``fraction`` of the hidden units of every dense chain and shrink both layers.

    Changes ``model`` in place; its inputs and outputs keep their shapes.

    Raises:
        InputError: the fraction is outside (0, 1), or the model has no dense chain.
    """
    _check_fraction(fraction)
    chains = dense_chains(model)
    if not chains:
        raise InputError(
            "the model has no prunable layers for --structured: it needs two MatMul/Gemm "
            "layers with stored weights joined by element-wise activations (try --prune "
            "without --structured for magnitude pruning)"
        )
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    touched = {name for c in chains for name in (c.w1, c.w2, c.b1) if name}
    before = sum(arrays[name].size for name in touched)
    units: dict[str, tuple[int, int]] = {}
    for chain in chains:
        w1, w2 = arrays[chain.w1], arrays[chain.w2]
        incoming = np.linalg.norm(w1, axis=1 - chain.w1_axis)
        outgoing = np.linalg.norm(w2, axis=1 - chain.w2_axis)
        keep_count = max(1, chain.units - int(fraction * chain.units))
        keep = np.sort(np.argsort(incoming * outgoing)[::-1][:keep_count])
        arrays[chain.w1] = np.take(w1, keep, axis=chain.w1_axis)
        arrays[chain.w2] = np.take(w2, keep, axis=chain.w2_axis)
        if chain.b1:
            arrays[chain.b1] = arrays[chain.b1][keep]
        units[chain.hidden] = (chain.units, keep_count)
    for name in touched:
        _set(model, name, np.ascontiguousarray(arrays[name]))
    # Recorded intermediate shapes named the old widths; ONNX Runtime infers them again.
    del model.graph.value_info[:]
    after = sum(arrays[name].size for name in touched)
    return PruneResult(tensors=len(touched), parameters_before=int(before),
                       parameters_after=int(after), sparsity=0.0, units=units)
