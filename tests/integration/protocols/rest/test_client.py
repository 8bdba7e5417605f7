"""ferry's own REST client and `ferry predict --url` against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ferry.client_rest import RestClient
from ferry.errors import InputError, NotFoundError, UnavailableError

FERRY = Path(sys.executable).parent / "ferry"


@pytest.fixture(scope="module", params=[True, False], ids=["binary", "json"])
def client(server, request):
    with RestClient(server.url, binary=request.param) as c:
        yield c


def test_infer_every_datatype(client):
    inputs = {
        "in_bool": np.array([[True, False, True]]),
        "in_uint64": np.array([[0, 1, 2**64 - 1]], dtype=np.uint64),
        "in_int8": np.array([[-1, 0, 1]], dtype=np.int8),
        "in_fp32": np.array([[0.5, 1.5, -2]], dtype=np.float32),
        "in_fp64": np.array([[0.1, 0.2, 0.3]]),
        "in_bytes": np.array([["a", "bé", ""]]),
    }
    full = {f"in_{d.lower()}": np.zeros((1, 3), dtype=d.lower().replace("fp", "float"))
            for d in ("UINT8", "UINT16", "UINT32", "INT16", "INT32", "INT64")}
    response = client.infer("alltypes", {**inputs, **full}, id="c-1",
                            outputs=["out_bool", "out_uint64", "out_bytes", "out_fp64"])
    assert response.id == "c-1" and response.model_version == "1"
    got = {t.name: t.data for t in response.outputs}
    assert set(got) == {"out_bool", "out_uint64", "out_bytes", "out_fp64"}
    assert np.array_equal(got["out_bool"], inputs["in_bool"])
    assert got["out_uint64"].dtype == np.uint64
    assert np.array_equal(got["out_uint64"], inputs["in_uint64"])
    assert np.array_equal(got["out_fp64"], inputs["in_fp64"])
    assert got["out_bytes"].tolist() == [[b"a", "bé".encode(), b""]]


def test_predict_health_metadata_repository(client):
    scores = client.predict("mlp", [[1, 2, 3, 4]])
    assert scores.shape == (1, 3) and scores.dtype == np.float32
    assert client.live() and client.ready() and client.model_ready("mlp")
    assert not client.model_ready("nope")
    assert "binary_tensor_data" in client.server_metadata().extensions
    assert client.model_metadata("mlp").inputs[0].shape == (-1, 4)
    assert any(row["name"] == "mlp" for row in client.repository_index())


def test_errors_come_back_as_ferry_errors(client):
    with pytest.raises(NotFoundError, match="nope"):
        client.infer("nope", {"x": np.zeros((1, 4), dtype=np.float32)})
    with pytest.raises(InputError, match="input 'x'"):
        client.infer("mlp", {"x": np.zeros((1, 5), dtype=np.float32)})
    with pytest.raises(InputError, match="has 2 inputs"):
        client.predict("pair", [[1, 2, 3, 4]])


def test_unreachable_server_is_unavailable():
    with RestClient("http://127.0.0.1:9", timeout=5) as c, \
            pytest.raises(UnavailableError, match="cannot reach"):
        c.live()


def test_ferry_predict_url_queries_the_server(server, tmp_path):
    sample = tmp_path / "rows.json"
    sample.write_text(json.dumps({"data": [[1, 2, 3, 4], [0, 0, 0, 0]]}))
    result = subprocess.run([str(FERRY), "predict", "mlp:1", "--input", str(sample),
                             "--url", server.url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model_name"] == "mlp" and answer["model_version"] == "1"
    assert answer["outputs"][0]["name"] == "scores" and answer["outputs"][0]["shape"] == [2, 3]


def test_ferry_predict_url_errors_are_one_line(server, tmp_path):
    sample = tmp_path / "rows.json"
    sample.write_text(json.dumps({"data": [[1, 2, 3]]}))
    result = subprocess.run([str(FERRY), "predict", "mlp", "--input", str(sample),
                             "--url", server.url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "input 'x'" in result.stderr and "Traceback" not in result.stderr
    unknown = subprocess.run([str(FERRY), "predict", "nope", "--input", str(sample),
                              "--url", server.url], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_ferry_predict_url_grpc_scheme(rest_repo, tmp_path):
    """grpc://HOST:PORT goes through ferry's GrpcClient to a real gRPC server."""
    import asyncio
    import threading

    from ferry.protocols.grpc.server import bind, build_server
    from rest_server import make_engine

    engine = make_engine(rest_repo)
    started, stop, port = threading.Event(), None, {}

    async def main():
        nonlocal stop
        stop = asyncio.Event()
        await engine.start()
        server = build_server(engine)
        port["value"] = bind(server, "127.0.0.1", 0)
        await server.start()
        started.set()
        await stop.wait()
        await server.stop(1)
        await engine.stop(timeout=5)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert started.wait(60)
        sample = tmp_path / "rows.json"
        sample.write_text(json.dumps({"data": [[1, 2, 3, 4]]}))
        result = subprocess.run([str(FERRY), "predict", "mlp", "--input", str(sample), "--url",
                                 f"grpc://127.0.0.1:{port['value']}"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["outputs"][0]["shape"] == [1, 3]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
