"""ferry: carry trained models from the lab into production.

``ferry.load(repository, "NAME[:VERSION]")`` runs a stored version inside this program
(:mod:`ferry.local`); it is imported on first use, so ``import ferry`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ferry.errors import FerryError
from ferry.repository import Manifest, ModelRef, Repository, VersionPolicy
from ferry.signature import Signature, TensorSpec

if TYPE_CHECKING:
    from ferry.local import LocalModel, load

__version__ = "0.1.0"

__all__ = [
    "FerryError",
    "LocalModel",
    "Manifest",
    "ModelRef",
    "Repository",
    "Signature",
    "TensorSpec",
    "VersionPolicy",
    "__version__",
    "load",
]


def __getattr__(name: str) -> Any:
    # ferry.load and ferry.LocalModel import ONNX Runtime: only when first asked for.
    if name in ("load", "LocalModel"):
        from ferry import local

        return getattr(local, name)
    raise AttributeError(f"module 'ferry' has no attribute {name!r}")
