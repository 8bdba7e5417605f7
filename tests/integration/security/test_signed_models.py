"""Issue 15 item 4: with trusted keys, a server serves signed versions only.

Real servers: the engine over a repository opened with trusted keys (as ``ferry serve
--trusted-keys`` builds it, through :func:`ferry.server.trusted_keys`) behind ferry's REST
port and gRPC, and ``ferry serve --trusted-keys`` itself as a subprocess. An unsigned or
tampered version is refused at startup and on a load, naming the version and the reason;
the served version stays.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import orjson
import pytest

from builders import mlp_onnx
from ferry.engine import Engine
from ferry.errors import UntrustedArtifactError
from ferry.formats import ImportOptions, import_model
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from ferry.protocols.grpc.server import bind, build_server
from ferry.repository import Repository, SigningKey
from ferry.server import trusted_keys
from ferry.settings import SecuritySettings
from rest_server import serve

pytestmark = pytest.mark.timeout(300)

V2_BODY = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                    "data": [0.5, -1.0, 2.0, 0.25]}]})
JSON = {"content-type": "application/json"}


def _import(repo: Repository, root: Path, seed: int) -> int:
    source = mlp_onnx(root / f"mlp-{seed}.onnx", seed=seed)
    return import_model(repo, source, "mlp", options=ImportOptions(sample_count=4)).version


def _setup(root: Path) -> tuple[Repository, SigningKey, Path]:
    repo = Repository(root / "repo")
    _import(repo, root, seed=0)
    key = SigningKey.generate()
    (root / "trusted-keys").write_text(key.public_line("release") + "\n")
    return repo, key, root / "trusted-keys"


async def _start_grpc(engine: Engine):
    server = build_server(engine)
    port = bind(server, "127.0.0.1", 0)
    await server.start()
    return server, port


def test_a_load_of_an_unsigned_version_is_refused_and_the_signed_one_stays(tmp_path):
    repo, key, keys_file = _setup(tmp_path)
    repo.sign("mlp:1", key)
    guarded = Repository(repo.root, trusted_keys=trusted_keys(
        SecuritySettings(trusted_keys_file=keys_file)))
    with serve(Engine(guarded), guarded) as rest:
        grpc_server, port = rest.call(_start_grpc(rest.engine))
        try:
            with httpx.Client(base_url=rest.url, timeout=30) as client:
                assert client.post("/v2/models/mlp/infer", content=V2_BODY,
                                   headers=JSON).status_code == 200
                assert _import(repo, tmp_path, seed=1) == 2  # a new version, not signed

                answer = client.post("/v2/repository/models/mlp/load")
                assert answer.status_code == 400
                assert "model mlp:2 is not signed, and a signature by a trusted key is " \
                       "required" in answer.json()["error"]
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = pb_grpc.GRPCInferenceServiceStub(channel)
                    with pytest.raises(grpc.RpcError) as refused:
                        stub.RepositoryModelLoad(
                            pb.RepositoryModelLoadRequest(model_name="mlp"), timeout=30)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "model mlp:2 is not signed" in refused.value.details()
                # the signed version is still the one served
                assert client.get("/v2/models/mlp").json()["versions"] == ["1"]
                served = client.post("/v2/models/mlp/infer", content=V2_BODY, headers=JSON)
                assert served.status_code == 200 and served.json()["model_version"] == "1"

                repo.sign("mlp:2", SigningKey.generate())  # by a key nobody trusts
                answer = client.post("/v2/repository/models/mlp/load")
                assert answer.status_code == 400
                assert "model mlp:2 is signed only by key(s) not in the trusted keys file" \
                       in answer.json()["error"]

                repo.sign("mlp:2", key)
                assert client.post("/v2/repository/models/mlp/load").status_code == 200
                assert client.get("/v2/models/mlp").json()["versions"] == ["2"]
        finally:
            rest.call(grpc_server.stop(grace=1))


def test_an_engine_with_trusted_keys_refuses_to_start_on_an_unsigned_version(tmp_path):
    repo, _, keys_file = _setup(tmp_path)
    guarded = Repository(repo.root, trusted_keys=trusted_keys(
        SecuritySettings(trusted_keys_file=keys_file)))
    engine = Engine(guarded)
    with pytest.raises(UntrustedArtifactError, match="model mlp:1 is not signed"):
        asyncio.run(engine.start())
    assert engine.served_models() == []


def _ferry_serve_fails(repo: Path, keys_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry", "serve", str(repo), "--http-port", "0",
         "--grpc-port", "0", "--log-format", "text", "--trusted-keys", str(keys_file)],
        capture_output=True, text=True, timeout=120, env={**os.environ})


def test_ferry_serve_with_trusted_keys_serves_signed_and_refuses_tampered_versions(tmp_path):
    from serving import ferry_serve

    repo, key, keys_file = _setup(tmp_path)
    unsigned = _ferry_serve_fails(repo.root, keys_file)
    assert unsigned.returncode == 2, unsigned.stderr
    assert "error: model mlp:1 is not signed" in unsigned.stderr
    assert "hint: sign it where it was made: ferry sign mlp:1 --key KEY.pem" in unsigned.stderr

    repo.sign("mlp:1", key)
    with ferry_serve(repo.root, "--trusted-keys", str(keys_file)) as server:
        assert httpx.post(f"{server.url}/v2/models/mlp/infer", content=V2_BODY,
                          headers=JSON, timeout=30).status_code == 200
        assert "signed models only: 1 trusted key(s)" in server.output()

    manifest = repo.root / "mlp" / "1" / "manifest.json"
    manifest.chmod(manifest.stat().st_mode | stat.S_IWUSR)
    data = json.loads(manifest.read_bytes())
    data["labels"] = ["a", "b", "c"]
    manifest.write_text(json.dumps(data))
    tampered = _ferry_serve_fails(repo.root, keys_file)
    assert tampered.returncode == 2, tampered.stderr
    assert (f"error: model mlp:1: the signature by trusted key {key.key_id} (release) does "
            "not verify: manifest.json changed after it was signed") in tampered.stderr
