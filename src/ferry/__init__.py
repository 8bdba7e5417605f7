"""ferry: carry trained models from the lab into production."""

from ferry.errors import FerryError
from ferry.repository import Manifest, ModelRef, Repository, VersionPolicy
from ferry.signature import Signature, TensorSpec

__version__ = "0.1.0"

__all__ = [
    "FerryError",
    "Manifest",
    "ModelRef",
    "Repository",
    "Signature",
    "TensorSpec",
    "VersionPolicy",
    "__version__",
]
