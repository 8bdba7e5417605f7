"""A stored model version, loaded and run inside the calling program: no server.

``ferry.load(repository, "digits:1")`` opens a version the way ``ferry serve`` does (every
file checked against the manifest's sha256, the manifest's signature too when
``trusted_keys`` are given), loads it with the runtime the manifest names, and returns a
:class:`LocalModel`: ``predict`` validates inputs with the server's rules and messages
(:meth:`ferry.signature.Signature.check_inputs`, :func:`ferry.signature.as_array`) and runs
the model on the calling thread.

This module imports the repository, the runtimes and the leaves only: no web, gRPC, engine
or framework library (a native runtime imports its framework when such a version is
loaded), so it works with ferry's core install.

Loaders: a manifest's ``runtime`` picks how a version becomes something that predicts. Every
runtime of :mod:`ferry.runtimes.registry` is loaded from its artifact by default; a kind of
version that needs more than its own files (a pipeline, whose steps are other versions of
the repository) registers a loader here with :func:`register_loader`, given the repository,
the opened version and the runtime options, and returns a :class:`~ferry.runtimes.Runtime`.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ferry.bundle import bundle_model
from ferry.errors import InputError, NotFoundError, UnavailableError
from ferry.repository import ModelRef, Repository, StoredModel, TrustedKeys
from ferry.runtimes import Arrays, Runtime, RuntimeOptions, load_runtime
from ferry.signature import Signature, as_array

__all__ = ["Loader", "LocalModel", "load", "register_loader"]

#: How a version of one runtime kind is loaded: (repository, opened version, options).
Loader = Callable[[Repository, StoredModel, RuntimeOptions], Runtime]

# Manifest runtime name -> "package.module:function" (imported on first use, as runtimes are).
_LOADERS: dict[str, str] = {"pipeline": "ferry.pipelines.local:load_pipeline"}


def register_loader(runtime: str, target: str) -> None:
    """Load versions whose manifest names ``runtime`` with ``target`` (``"module:function"``).

    The function is a :data:`Loader`. Versions of other runtimes are loaded from their own
    artifact by :func:`ferry.runtimes.load_runtime`.
    """
    _LOADERS[runtime] = target


def _loader(runtime: str) -> Loader:
    target = _LOADERS.get(runtime)
    if target is None:
        return _load_artifact
    module_name, _, attr = target.partition(":")
    loader: Loader = getattr(importlib.import_module(module_name), attr)
    return loader


def _load_artifact(repository: Repository, stored: StoredModel,
                   options: RuntimeOptions) -> Runtime:
    manifest = stored.manifest
    return load_runtime(manifest.runtime, stored.artifact_path, manifest.signature, options)


class LocalModel:
    """One model version loaded in this process; ``predict`` may be called from any thread.

    Use :func:`load` to make one. Close it (or use it as a context manager) to free the
    runtime's memory; ``predict`` after ``close`` raises :class:`~ferry.errors.UnavailableError`.
    """

    def __init__(self, stored: StoredModel, runtime: Runtime) -> None:
        self._manifest = stored.manifest
        self._path = stored.path
        self._runtime: Runtime | None = runtime
        self._signature = stored.manifest.signature
        self._single = self._signature.inputs[0] if len(self._signature.inputs) == 1 else None
        # The common case checked in a few comparisons (the full check gives the messages):
        # per input, its name, dtype and the fixed dimensions after a variable batch axis.
        self._quick = [(spec.name, spec.dtype, spec.shape[1:]) for spec in self._signature.inputs
                       if spec.shape and spec.shape[0] == -1 and -1 not in spec.shape[1:]]
        if len(self._quick) != len(self._signature.inputs) or len(self._quick) > 1:
            self._quick = []  # several inputs also have to agree on the batch size
        # Calls in flight, so that close() frees the runtime only after the last one.
        self._lock = threading.Lock()
        self._running = 0

    # ------------------------------------------------------------------ what it is

    @property
    def name(self) -> str:
        """The model's name."""
        return self._manifest.name

    @property
    def version(self) -> int:
        """The version loaded."""
        return self._manifest.version

    @property
    def signature(self) -> Signature:
        """The inputs and outputs: names, V2 datatypes, shapes (``-1`` = any size)."""
        return self._signature

    @property
    def labels(self) -> list[str] | None:
        """Class labels recorded at import (index = class id), if any."""
        return self._manifest.labels

    @property
    def path(self) -> Path:
        """The version directory the model was loaded from."""
        return self._path

    def __repr__(self) -> str:
        state = "closed" if self._runtime is None else self._manifest.runtime
        return f"<LocalModel {self.name}:{self.version} ({state})>"

    # ------------------------------------------------------------------ running

    def predict(self, inputs: Mapping[str, Any] | Any, *,
                outputs: Sequence[str] | None = None) -> dict[str, np.ndarray[Any, Any]]:
        """Run the model and return its outputs by name.

        Args:
            inputs: a dict of input name -> array (or nested lists), or, for a model with
                one input, that input's array alone. Values are converted to the input's
                datatype only where nothing is lost (ints into a float input, yes; floats
                into an int input, no); shapes are not changed: a single row of a model
                with a batch axis is ``[row]`` or ``array[None]``.
            outputs: names of the outputs to compute (default: all).

        Raises:
            InputError: an input is missing, unknown, of the wrong datatype or shape, or the
                model has several inputs and got one array; the same messages the server
                answers with 400.
            UnavailableError: the model was closed.
        """
        arrays = self._quick_arrays(inputs)
        if arrays is None:
            arrays = self._arrays(inputs)
            self._signature.check_inputs(arrays)
        if outputs is not None:
            outputs = list(outputs)
            self._signature.check_output_names(outputs)
        with self._lock:
            runtime = self._runtime
            self._running += 1
        try:
            if runtime is None:
                raise UnavailableError(f"model {self.name}:{self.version} is closed")
            return runtime.predict(arrays, outputs)
        finally:
            with self._lock:
                self._running -= 1

    def _quick_arrays(self, inputs: Mapping[str, Any] | Any) -> Arrays | None:
        """The inputs as they are if they fit exactly, else None (then checked in full).

        Exactly: one array of the input's dtype whose dimensions after the batch axis are
        the model's.
        """
        if not self._quick:
            return None
        name, dtype, tail = self._quick[0]
        if type(inputs) is dict and len(inputs) == 1:
            array = inputs.get(name)
        elif type(inputs) is np.ndarray:
            array = inputs
        else:
            return None
        if (type(array) is np.ndarray and array.dtype == dtype
                and array.shape[1:] == tail and array.ndim == len(tail) + 1):
            return {name: array}
        return None

    def _arrays(self, inputs: Mapping[str, Any] | Any) -> Arrays:
        if isinstance(inputs, Mapping):
            arrays: Arrays = {}
            for name, value in inputs.items():
                if not isinstance(name, str):
                    raise InputError(f"input names are strings, got {type(name).__name__} "
                                     f"{name!r}")
                if isinstance(value, np.ndarray) and value.dtype.kind != "O":
                    arrays[name] = value  # a wrong dtype is named by check_inputs
                    continue
                try:
                    spec = self._signature.input(name)
                except NotFoundError:
                    arrays[name] = np.asarray(value)  # check_inputs names the inputs
                    continue
                arrays[name] = as_array(spec, value)
            return arrays
        single = self._single
        if single is None:
            raise InputError(
                f"model {self.name}:{self.version} has {len(self._signature.inputs)} inputs "
                f"({', '.join(repr(n) for n in self._signature.input_names)}); pass a dict "
                "of input name -> array"
            )
        if isinstance(inputs, np.ndarray) and inputs.dtype == single.dtype:
            return {single.name: inputs}
        return {single.name: as_array(single, inputs)}

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Free the runtime once the calls already running have finished; later ones raise."""
        with self._lock:
            runtime, self._runtime = self._runtime, None
        while self._running:  # calls that took the runtime before it was taken away
            time.sleep(0.001)
        if runtime is not None:
            runtime.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._runtime is None

    def __enter__(self) -> LocalModel:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def load(repository: Repository | Path | str, model: str | None = None, *,
         trusted_keys: TrustedKeys | None = None,
         options: RuntimeOptions | None = None) -> LocalModel:
    """Load a stored model version into this process.

    Args:
        repository: a model repository directory (or :class:`~ferry.repository.Repository`);
            a bundle written by ``ferry export`` is one. ``s3://bucket/prefix`` loads from
            object storage (``ferry[s3]``), through the local cache.
        model: ``"NAME"`` (its latest version) or ``"NAME:VERSION"``. May be left out for
            an exported bundle (it names its version) or a repository of one model.
        trusted_keys: when given, refuse a version not signed by one of these keys.
        options: ONNX Runtime threads and graph optimization (default: one intra-op
            thread per CPU this process may use).

    Raises:
        NotFoundError: no such repository, model or version (the message lists what exists),
            or ``model`` left out where the repository holds none or several.
        IntegrityError: a file of the version is missing, unexpected or modified.
        UntrustedArtifactError: ``trusted_keys`` are set and the version is not signed by one.
        MissingDependencyError: the version runs on a native runtime whose extra is not
            installed (the message names it).
        ArtifactError: the artifact cannot be loaded.
    """
    repo = repository if isinstance(repository, Repository) else Repository(
        Path(repository), trusted_keys=trusted_keys)
    if trusted_keys is not None and repo.trusted_keys is None:
        repo = Repository(repo.location, trusted_keys=trusted_keys, cache_dir=repo.root,
                          cache_versions=repo.cache_versions)
    ref = ModelRef.parse(model if model is not None else _only_model(repo))
    stored = repo.open(ref)
    runtime = _loader(stored.manifest.runtime)(repo, stored, options or RuntimeOptions())
    try:
        return LocalModel(stored, runtime)
    except BaseException:
        runtime.close()
        raise


def _only_model(repo: Repository) -> str:
    if not repo.exists():
        raise NotFoundError(f"no model repository or bundle at {repo.location!r}")
    # A bundle says which version it was made for (bundles are directories).
    named = bundle_model(repo.root) if repo.storage is None else None
    if named is not None:
        return named
    names = repo.models()
    if len(names) == 1:
        return names[0]
    if not names:
        raise NotFoundError(f"{repo.location!r} holds no model version")
    raise NotFoundError(
        f"{repo.location!r} holds {len(names)} models ({', '.join(names)}); name one: "
        f"ferry.load({repo.location!r}, {names[0]!r})"
    )
