"""Real models for integration tests, built once per session from bundled data."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import mlp_onnx
from ferry.demo import SeedData, load_seed_data, train_seed_model


@pytest.fixture(scope="session")
def seed_data() -> SeedData:
    """scikit-learn's bundled digits, split as the tutorial does."""
    return load_seed_data()


@pytest.fixture(scope="session")
def seed_h5(tmp_path_factory: pytest.TempPathFactory, seed_data: SeedData) -> Path:
    """The seed network, trained for real (a few epochs) and saved as my_model.h5."""
    path = tmp_path_factory.mktemp("seed") / "my_model.h5"
    train_seed_model(path, seed_data, epochs=3)
    return path


@pytest.fixture(scope="session")
def seed_keras(seed_h5: Path) -> Path:
    """The same trained network saved in the native .keras format."""
    from ferry.formats.keras import import_keras

    keras = import_keras()
    path = seed_h5.with_name("my_model.keras")
    keras.models.load_model(seed_h5, compile=False).save(path)
    return path


@pytest.fixture
def mlp_path(tmp_path: Path) -> Path:
    """A fresh small ONNX MLP file in a folder of its own."""
    folder = tmp_path / "mlp"
    folder.mkdir()
    return mlp_onnx(folder / "mlp.onnx")
