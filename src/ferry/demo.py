"""The demo: the seed tutorial's network, trained on scikit-learn's bundled digits.

The tutorial trains a Keras ``Sequential`` of Dense(64, relu) -> Dense(64, relu) -> Dense(10)
on 8x8 digit images (64 features), saves it with ``model.save('my_model.h5')`` and wraps
``model.predict`` in a Flask ``/predict`` route (see ``examples/seed``). The demo does the
first half exactly as written there, then lets ferry take over: import, verify, predict.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import MissingDependencyError
from ferry.formats import ImportOptions, Progress, get_importer, import_model
from ferry.formats.keras import import_keras
from ferry.repository import Manifest, Repository
from ferry.runtimes import load_runtime

__all__ = ["DemoResult", "SeedData", "load_seed_data", "run_demo", "train_seed_model"]

DEMO_LABELS = [str(d) for d in range(10)]


@dataclass(frozen=True)
class SeedData:
    """The digits split the tutorial uses: features scaled to [0, 1], 80/20 split."""

    x_train: np.ndarray[Any, Any]
    y_train: np.ndarray[Any, Any]
    x_test: np.ndarray[Any, Any]
    y_test: np.ndarray[Any, Any]


@dataclass(frozen=True)
class DemoResult:
    """What ``ferry demo`` reports."""

    manifest: Manifest
    source: Path
    keras_accuracy: float
    onnx_accuracy: float
    test_rows: int


def load_seed_data(seed: int = 0) -> SeedData:
    """Load scikit-learn's bundled digits (no download) and split them reproducibly."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    return SeedData(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64))


def train_seed_model(path: Path, data: SeedData, *, epochs: int = 20, seed: int = 0) -> float:
    """Train the seed network exactly as the tutorial does and save it to ``path``.

    Returns:
        Keras' own accuracy on the test split.
    """
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(shape=(64,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)  # the tutorial's legacy .h5, exactly as it saves it
    _, accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
    return float(accuracy)


def run_demo(repo: Repository, *, name: str = "digits", workdir: Path = Path("build/demo"),
             epochs: int = 20, progress: Progress | None = None) -> DemoResult:
    """Train, save as ``my_model.h5``, import into ``repo``, and score the ONNX artifact.

    Raises:
        MissingDependencyError: Keras or scikit-learn is not installed (``ferry[demo]``).
    """
    if importlib.util.find_spec("sklearn") is None:
        raise MissingDependencyError("the demo", "demo")
    get_importer("keras").ensure_available()
    data = load_seed_data()
    source = workdir / "my_model.h5"
    step = progress.step if progress else None
    if step:
        with step(f"training the seed network on digits ({epochs} epochs)"):
            keras_accuracy = train_seed_model(source, data, epochs=epochs)
    else:
        keras_accuracy = train_seed_model(source, data, epochs=epochs)
    options = ImportOptions(
        samples=data.x_test,
        samples_origin=f"{len(data.x_test)} rows of the digits test split",
        labels=DEMO_LABELS,
    )
    manifest = import_model(repo, source, name, options=options, progress=progress)
    stored = repo.open(f"{name}:{manifest.version}")
    with load_runtime(manifest.runtime, stored.artifact_path, manifest.signature) as runtime:
        logits = runtime.predict({manifest.signature.inputs[0].name: data.x_test})
    predicted = np.argmax(logits[manifest.signature.outputs[0].name], axis=1)
    onnx_accuracy = float(np.mean(predicted == data.y_test))
    return DemoResult(manifest, source, keras_accuracy, onnx_accuracy, len(data.x_test))
