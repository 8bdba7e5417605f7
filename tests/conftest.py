"""Shared fixtures. Tests are marked by folder: unit, integration, e2e (``-m unit``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferry.repository import Repository

# TensorFlow is quiet and deterministic in tests; set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

_TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        part = Path(str(item.fspath)).relative_to(_TESTS).parts[0]
        if part in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, part))


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    """An empty model repository in a temporary directory."""
    return Repository(tmp_path / "repo")
