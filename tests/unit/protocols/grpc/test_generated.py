"""The committed gRPC code is exactly what regenerating it from the .proto gives (issue 4).

This is the "regenerated in CI" check: edit ``proto/inference.proto``, forget ``make proto``,
and this fails with the names of the stale files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from extras import require

ROOT = Path(__file__).resolve().parents[4]
GENERATED = ROOT / "src" / "ferry" / "protocols" / "grpc" / "_generated"

require("grpc_tools")  # grpcio-tools (the dev extra) regenerates the code


def test_generated_code_matches_a_fresh_regeneration(tmp_path: Path) -> None:
    out = tmp_path / "_generated"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_grpc.py"), "--out", str(out)],
        check=True, capture_output=True, text=True,
    )
    fresh = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    committed = {p.name: p.read_bytes() for p in GENERATED.iterdir() if p.is_file()}
    assert sorted(fresh) == sorted(committed), "generated file names differ: run `make proto`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files {stale}: run `make proto` and commit them"


def test_generated_messages_stay_out_of_protobufs_default_pool() -> None:
    # Triton's and KServe's clients register the same inference.* names in the default
    # pool; ferry's own pool lets its server and client share a process with either.
    from google.protobuf import descriptor_pool

    from ferry.protocols.grpc._generated import inference_pb2

    assert inference_pb2.DESCRIPTOR.pool is not descriptor_pool.Default()
    with pytest.raises(KeyError):
        descriptor_pool.Default().FindFileByName("inference.proto")
