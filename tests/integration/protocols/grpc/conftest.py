"""One real gRPC server per module over a repository of real ONNX models."""

from __future__ import annotations

import pytest

from ferry.engine import Engine
from grpc_server import build_repository, serve_grpc


@pytest.fixture(scope="module")
def grpc_repo(tmp_path_factory):
    return build_repository(tmp_path_factory.mktemp("grpc"))


@pytest.fixture(scope="module")
def served(grpc_repo):
    with serve_grpc(Engine(grpc_repo)) as running:
        yield running
