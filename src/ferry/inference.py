"""The engine's transport-free vocabulary: requests, responses, metadata.

REST and gRPC adapters decode their wire formats into these types, call the engine, and
encode what comes back. Names follow the Open Inference Protocol (``model_name``,
``inputs``, ``datatype``, ``shape``, ``parameters``) so that the mapping stays obvious.
Versions are strings here, as on the wire; the repository's integers are formatted once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferry.signature import TensorSpec

__all__ = [
    "InferRequest",
    "InferResponse",
    "ModelIndexEntry",
    "ModelMetadata",
    "RequestedOutput",
    "ServerMetadata",
    "Tensor",
]


@dataclass(slots=True)
class Tensor:
    """A named tensor. ``data`` has the shape and the numpy dtype of ``datatype``.

    BYTES tensors are object arrays of ``bytes``.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray[Any, Any]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for, with its per-output parameters (``binary_data``)."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """One inference request, already decoded from its transport.

    Only what the model needs: who asks, through which door and until when is the call's
    :class:`~ferry.call.CallContext`, passed beside it.
    """

    model_name: str
    inputs: list[Tensor]
    model_version: str | None = None
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferResponse:
    """The answer to an :class:`InferRequest`: which version answered, and its outputs."""

    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What V2 model metadata reports, plus ferry's class labels."""

    name: str
    versions: list[str]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: list[str] | None = None


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """What V2 server metadata reports."""

    name: str
    version: str
    extensions: list[str]


@dataclass(frozen=True, slots=True)
class ModelIndexEntry:
    """One row of the repository index (Triton's model repository extension)."""

    name: str
    version: str | None
    state: str  # READY, UNAVAILABLE, LOADING, UNLOADING
    reason: str = ""
