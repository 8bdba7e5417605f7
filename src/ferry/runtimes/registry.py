"""Runtime names (as stored in manifests) -> implementations, imported on first use."""

from __future__ import annotations

import importlib
from pathlib import Path

from ferry.errors import ArtifactError
from ferry.runtimes.base import Runtime, RuntimeOptions
from ferry.signature import Signature

__all__ = ["load_runtime", "register_runtime", "runtime_class", "runtime_names"]

# Module paths, not classes: importing a runtime may import a heavy framework.
_RUNTIMES: dict[str, str] = {
    "onnxruntime": "ferry.runtimes.onnxruntime:OrtRuntime",
    "torch": "ferry.runtimes.torch:TorchExportRuntime",
    "torchscript": "ferry.runtimes.torch:TorchScriptRuntime",
    "tensorflow": "ferry.runtimes.tensorflow:SavedModelRuntime",
    "pmml": "ferry.runtimes.pmml:PmmlRuntime",
    "sklearn": "ferry.runtimes.sklearn:SklearnRuntime",
    "xgboost": "ferry.runtimes.boosters:XGBoostRuntime",
    "lightgbm": "ferry.runtimes.boosters:LightGBMRuntime",
}


def register_runtime(name: str, target: str) -> None:
    """Register a runtime as ``"package.module:Class"`` under the name manifests use."""
    _RUNTIMES[name] = target


def runtime_names() -> list[str]:
    """The registered runtime names, sorted."""
    return sorted(_RUNTIMES)


def runtime_class(name: str) -> type[Runtime]:
    """Import and return the runtime class registered as ``name``.

    Raises:
        ArtifactError: no runtime of that name (a manifest from a newer ferry, say).
    """
    try:
        target = _RUNTIMES[name]
    except KeyError:
        raise ArtifactError(
            f"unknown runtime {name!r}; this ferry has {', '.join(runtime_names())}"
        ) from None
    module_name, _, attr = target.partition(":")
    cls: type[Runtime] = getattr(importlib.import_module(module_name), attr)
    return cls


def load_runtime(name: str, artifact: Path, signature: Signature,
                 options: RuntimeOptions | None = None) -> Runtime:
    """Load ``artifact`` with the runtime registered as ``name``."""
    return runtime_class(name).load(artifact, signature, options or RuntimeOptions())
