"""Compaction: short internal names, and no stored intermediate shapes.

Converters name every tensor and node after the source framework's scopes
(``sequential_1/dense_1_2/BiasAdd/ReadVariableOp:0``), and the quantizers append suffixes
to them. For a small model those names weigh as much as its int8 weights. This pass renames
every node and every tensor that is not a graph input or output (``n0``, ``t0``, ...), and
drops the recorded shapes of intermediate tensors (``value_info``), which ONNX Runtime
infers again when it loads the model. What the model computes, and its signature, do not
change. Graphs with subgraphs (If, Loop, Scan) are left as they are: their bodies may refer
to outer names.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

__all__ = ["CompactResult", "compact"]


@dataclass(frozen=True)
class CompactResult:
    """Serialized size before and after, in bytes (0 and 0 when the graph was left alone)."""

    before: int
    after: int

    def summary(self) -> str:
        """One line for the report."""
        if not self.before:
            return "left as is (the graph has subgraphs)"
        return (f"internal names shortened and intermediate shapes dropped: "
                f"{self.before:,} -> {self.after:,} bytes")


def compact(model: onnx.ModelProto) -> CompactResult:
    """Rename internal tensors and nodes and drop ``value_info``, in place."""
    graph = model.graph
    if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for node in graph.node for attr in node.attribute):
        return CompactResult(0, 0)
    before = model.ByteSize()
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    renames: dict[str, str] = {}

    def short(name: str) -> str:
        if name in keep:
            return name
        if name not in renames:
            renames[name] = f"t{len(renames)}"
        return renames[name]

    for init in graph.initializer:
        init.name = short(init.name)
    for sparse in graph.sparse_initializer:
        sparse.values.name = short(sparse.values.name)
    for index, node in enumerate(graph.node):
        node.name = f"n{index}"
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]
    del graph.value_info[:]
    return CompactResult(before, model.ByteSize())
