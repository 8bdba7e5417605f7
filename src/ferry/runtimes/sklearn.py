"""The native scikit-learn runtime: the fitted estimator itself answers.

Used when skl2onnx has no converter for an estimator (``KernelRidge``, ``LabelSpreading``,
``NearestCentroid``, a user's own class in a trusted pickle, ...), when the converted model
misses parity, or with ``ferry import --native``. The signature is the one the ONNX model
would have had (one FP32 ``input`` of shape ``[-1, features]``; ``probabilities`` and
``label``, or ``predictions``), so clients cannot tell which runtime answers.

Safety at load time is the import's: a skops file is rebuilt only from allow-listed types
(:func:`is_allowed`); a pickle is unpickled only because the repository has just checked
its sha256 against the manifest, i.e. it is byte for byte the file whose hash the operator
passed to ``--trust-sha256`` at import.

scikit-learn and skops are imported inside the functions that use them, so this module is
cheap to import and serving ONNX models never loads them.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ferry.errors import ArtifactError, InputError, MissingDependencyError, UntrustedArtifactError
from ferry.runtimes.base import Arrays, Runtime, RuntimeOptions
from ferry.signature import Signature

__all__ = [
    "DENIED_PARTS",
    "TRUSTED_PREFIXES",
    "SklearnRuntime",
    "is_allowed",
    "load_pickle",
    "load_skops",
]

#: Type-name prefixes a skops file may use beyond skops' own trusted set.
TRUSTED_PREFIXES: tuple[str, ...] = ("sklearn.", "numpy.", "scipy.sparse.")
#: Module-name parts refused even under a trusted prefix: they read or write files, run
#: compilers or load shared libraries, none of which a fitted estimator needs.
DENIED_PARTS: tuple[str, ...] = (
    "f2py", "distutils", "testing", "npyio", "ctypeslib", "numpy.load", "numpy.save",
    "numpy.fromfile", "numpy.memmap", "numpy.lib.format", "sklearn.utils._testing",
    "sklearn.datasets", "sklearn.externals",
)


def is_allowed(type_name: str) -> bool:
    """Whether ferry lets skops rebuild ``type_name``."""
    return type_name.startswith(TRUSTED_PREFIXES) and not any(
        part in type_name for part in DENIED_PARTS
    )


def load_skops(source: Path) -> Any:
    """Rebuild the estimator in a skops file, refusing any type outside the allow-list.

    Raises:
        ArtifactError: the file is not a readable skops file, or skops cannot load it.
        UntrustedArtifactError: it holds a type ferry does not trust (named).
    """
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=source)
    except Exception as exc:  # zipfile, json and skops raise many types for damaged files
        raise ArtifactError(
            f"{source.name} is not a readable skops file ({_first_line(exc)})",
            hint="the file may be truncated or corrupted; save it again with skops.io.dump",
        ) from None
    refused = [name for name in untrusted if not is_allowed(name)]
    if refused:
        raise UntrustedArtifactError(
            f"{source.name} holds type {refused[0]!r}"
            + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else "")
            + ", which ferry does not trust: loading it could run that type's code",
            hint="use only scikit-learn, numpy and scipy.sparse types in the saved model",
        )
    try:
        return skops.io.load(source, trusted=untrusted)
    except Exception as exc:  # skops raises many types for damaged or mismatched files
        raise ArtifactError(
            f"skops cannot load {source.name} ({_first_line(exc)})",
            hint="the file may be corrupted, or saved by another scikit-learn version",
        ) from None


def load_pickle(source: Path) -> Any:
    """Unpickle a file whose sha256 the caller has already checked against a trusted one.

    Raises:
        ArtifactError: unpickling failed (truncated file, missing module, ...).
    """
    import joblib

    try:
        with warnings.catch_warnings():
            # A pickle from another scikit-learn version warns; parity will tell if it matters.
            warnings.simplefilter("ignore")
            return joblib.load(source)
    except Exception as exc:  # unpickling raises anything the file's classes raise
        raise ArtifactError(
            f"{source.name} cannot be unpickled ({_first_line(exc)})",
            hint="the file may be truncated, or need a module that is not installed",
        ) from None


class SklearnRuntime(Runtime):
    """A fitted scikit-learn classifier or regressor on a feature matrix."""

    name: ClassVar[str] = "sklearn"

    def __init__(self, signature: Signature, model: Any) -> None:
        super().__init__(signature)
        self._model = model
        self._columns = getattr(model, "feature_names_in_", None)
        # Fitted estimators are read-only in predict, but not every one promises to be
        # thread-safe (a user's own class may cache): one call at a time.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, artifact: Path, signature: Signature, options: RuntimeOptions) -> Runtime:
        """Load the stored source file (the repository has verified its sha256)."""
        try:
            # skops imports scikit-learn: this checks the extra before any file is read.
            import skops.io  # noqa: F401
        except ImportError:
            raise MissingDependencyError("running scikit-learn models natively",
                                         "sklearn") from None
        with artifact.open("rb") as handle:
            head = handle.read(2)
        model = load_pickle(artifact) if head[:1] == b"\x80" else load_skops(artifact)
        if not hasattr(model, "predict"):
            raise ArtifactError(f"{artifact.name} holds a {type(model).__name__}, no estimator")
        if [spec.name for spec in signature.inputs] != ["input"]:
            raise ArtifactError("the native scikit-learn runtime takes one 'input' matrix")
        return cls(signature, model)

    def predict(self, inputs: Mapping[str, np.ndarray[Any, Any]],
                outputs: Sequence[str] | None = None) -> Arrays:
        """``predict`` (and ``predict_proba``) of the estimator, named as the ONNX model's."""
        wanted = list(outputs) if outputs is not None else self.signature.output_names
        x: Any = np.asarray(inputs["input"], dtype=np.float64)
        if self._columns is not None:
            import pandas as pd

            x = pd.DataFrame(x, columns=list(self._columns))
        specs = {spec.name: spec for spec in self.signature.outputs}
        result: Arrays = {}
        try:
            with self._lock, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if "probabilities" in wanted:
                    result["probabilities"] = np.asarray(
                        self._model.predict_proba(x), dtype=np.float32)
                if "label" in wanted or "predictions" in wanted:
                    predicted = np.asarray(self._model.predict(x))
        except Exception as exc:  # the estimator's own ValueError, TypeError, ...
            raise InputError(f"scikit-learn rejected the inputs: {_first_line(exc)}") from None
        if "predictions" in wanted:
            rank = len(specs["predictions"].shape)
            values = predicted.astype(np.float32)
            result["predictions"] = values.reshape(len(values), -1) if rank == 2 else values
        if "label" in wanted:
            if specs["label"].datatype == "BYTES":
                labels = np.empty(predicted.shape, dtype=object)
                labels[:] = [str(v).encode("utf-8") for v in predicted.reshape(-1)]
                result["label"] = labels
            else:
                result["label"] = predicted.astype(np.int64)
        return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
