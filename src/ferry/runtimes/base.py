"""The ``Runtime`` interface: what the engine and the parity check call to run a model.

ONNX Runtime is the default; a format without a converter plugs in a native runtime behind
the same interface (registered in :mod:`ferry.runtimes.registry`).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ferry.signature import Signature

__all__ = ["Arrays", "Runtime", "RuntimeOptions", "usable_cpus"]

#: Tensors by name; BYTES tensors are object arrays of ``bytes``.
Arrays = dict[str, np.ndarray[Any, Any]]


class RuntimeOptions(BaseModel):
    """Execution settings of one loaded model (per model, from its manifest's ``config``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    intra_op_threads: int = Field(
        0, ge=0, description="threads inside one operator; 0 = one per CPU the process may "
        "use (its affinity mask: taskset, a cgroup cpuset)"
    )
    inter_op_threads: int = Field(
        0, ge=0, description="threads across independent operators (parallel mode only); 0 = auto"
    )
    execution_mode: Literal["sequential", "parallel"] = Field(
        "sequential", description="run independent branches of the graph in parallel or not"
    )
    graph_optimization: Literal["disabled", "basic", "extended", "all"] = Field(
        "all", description="how much graph rewriting (fusion, constant folding) to do at load"
    )
    allow_spinning: bool = Field(
        True,
        description="let idle worker threads spin for new work: lower latency, "
        "but burns CPU that a busy server might rather spend on parsing requests",
    )


class Runtime(abc.ABC):
    """A loaded model that answers ``predict`` calls.

    Implementations must be safe to call from several threads at once (the engine runs
    inference off the event loop) and should release the GIL while computing.
    """

    #: The name stored in manifests (``runtime = "onnxruntime"``).
    name: ClassVar[str]

    def __init__(self, signature: Signature) -> None:
        self.signature = signature

    @classmethod
    @abc.abstractmethod
    def load(cls, artifact: Path, signature: Signature, options: RuntimeOptions) -> Runtime:
        """Load the artifact at ``artifact``, whose signature the manifest recorded.

        Raises:
            ArtifactError: the artifact cannot be loaded or does not match the signature.
        """

    @property
    def supports_batching(self) -> bool:
        """Whether requests may be concatenated along the first axis."""
        return self.signature.batch_axis

    @abc.abstractmethod
    def predict(self, inputs: Mapping[str, np.ndarray[Any, Any]],
                outputs: Sequence[str] | None = None) -> Arrays:
        """Run the model on already-validated inputs.

        Args:
            inputs: one array per model input, of the signature's dtypes and shapes.
            outputs: names of the outputs to compute; all of them when ``None``.

        Raises:
            InputError: the model itself rejected these values (e.g. an index out of range).
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most runtimes hold nothing to free
        """Free what the runtime holds. The default does nothing."""

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask); 0 where the platform cannot say.

    Not the machine's cores: runtimes size their thread pools by it, and the engine's
    batching reads it (on one core the loop and the compute thread take turns). ONNX
    Runtime's own default (0) starts one thread per physical core and pins each to its
    core, overriding ``taskset``, a cgroup cpuset or ``--cpuset-cpus``: a server confined to
    one core then computed on two. Asking for as many threads as the mask holds keeps the
    runtime where the operator put the process.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux: the runtime's own default
        return 0
