"""Versions for the repository tests, also made in spawned child processes.

A child started with the ``spawn`` method imports the function it runs by its module's
name. A test module's name (``tests.unit...`` under pytest's importlib mode) can resolve to
another distribution's top-level ``tests`` package in the child (tf2onnx installs one), so
the child failed to import it and the pool waited forever under ``.venv/bin/pytest``. This
module is on the tests' ``pythonpath`` under a name nothing else uses.
"""

from __future__ import annotations

from ferry.repository import Manifest, Repository, SourceInfo, now_utc
from ferry.signature import Signature, TensorSpec

__all__ = ["SIG", "add_version", "commit_in_child", "draft"]

SIG = Signature(
    inputs=(TensorSpec(name="x", datatype="FP32", shape=(-1, 4)),),
    outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1, 2)),),
)


def draft(name: str = "m") -> Manifest:
    return Manifest(
        name=name, version=0, format="onnx", runtime="onnxruntime", platform="onnx_onnxv1",
        artifact="model.onnx", signature=SIG, files={},
        source=SourceInfo(filename="m.onnx", sha256="0" * 64, size=3, format="onnx"),
        created=now_utc(),
    )


def add_version(repo: Repository, name: str = "m", payload: bytes = b"abc",
                extra: dict[str, bytes] | None = None) -> Manifest:
    with repo.stage() as work:
        (work / "model.onnx").write_bytes(payload)
        for rel, data in (extra or {}).items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes(data)
        return repo.commit(work, draft(name))


def commit_in_child(root: str, payload: bytes) -> int:
    """Commit one version with ``payload`` in the repository at ``root``; its number."""
    return add_version(Repository(root), payload=payload).version
