"""Gradient-boosted trees trained on scikit-learn's bundled data, for the tree importers' tests.

Each model is tiny (a few shallow trees) and fitted on the whole dataset; the tests compare
what ferry serves with the framework's own predictions on every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ferry.repository import Repository
from ferry.runtimes import load_runtime


@dataclass
class Dataset:
    """Features (float32, as boosters read them) and targets of a bundled dataset."""

    name: str
    x: np.ndarray
    y: np.ndarray
    kind: str  # classifier / regressor


def dataset(name: str) -> Dataset:
    """iris (3 classes), breast_cancer (binary) or diabetes (regression)."""
    from sklearn import datasets

    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    kind = "regressor" if name == "diabetes" else "classifier"
    return Dataset(name, x.astype(np.float32), y, kind)


def served(repo: Repository, name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """Load the latest version with the runtime its manifest names, and predict."""
    stored = repo.open(name)
    manifest = stored.manifest
    with load_runtime(manifest.runtime, stored.artifact_path, manifest.signature) as runtime:
        return runtime.predict({manifest.signature.inputs[0].name: x})


def check_served(repo: Repository, name: str, data: Dataset, *, labels: Any = None,
                 proba: Any = None, values: Any = None) -> dict[str, np.ndarray]:
    """Compare the served model with the framework's own outputs on every row.

    Labels must be identical; probabilities and values within the manifest's tolerance
    (``tolerance + rtol * |value|``).
    """
    manifest = repo.open(name).manifest
    parity = manifest.parity
    got = served(repo, name, data.x)
    if labels is not None:
        np.testing.assert_array_equal(got["label"], np.asarray(labels))
    if proba is not None:
        assert got["probabilities"].shape == np.asarray(proba).shape
        assert np.max(np.abs(got["probabilities"] - proba)) <= parity.tolerance
    if values is not None:
        want = np.asarray(values, dtype=np.float64).reshape(got["predictions"].shape)
        delta = np.abs(got["predictions"].astype(np.float64) - want)
        assert np.all(delta <= parity.tolerance + parity.rtol * np.abs(want))
    return got


def nothing_written(repo: Repository) -> None:
    """No model, and nothing left in the staging area."""
    assert repo.models() == []
    staging = repo.root / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def cli(capsys, *args: Any) -> tuple[int, str, str]:
    """Run ``ferry`` in-process; return the exit status, stdout and stderr."""
    from ferry.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    """The error as the CLI printed it: one ``error:`` line, no traceback (progress lines
    and an optional ``hint:`` line may surround it)."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]
