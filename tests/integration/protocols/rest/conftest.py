"""Fixtures of the REST integration tests: one real server per module (tests/rest_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ferry.repository import Repository
from rest_server import Served, build_repository, make_engine, serve


@pytest.fixture(scope="session")
def rest_repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    """A repository of the protocol test models, built once."""
    return build_repository(tmp_path_factory.mktemp("rest"))


@pytest.fixture(scope="module")
def server(rest_repo: Repository) -> Iterator[Served]:
    """One running server per test module."""
    with serve(make_engine(rest_repo), rest_repo) as served:
        yield served
