"""A full queue is refused at once with 429 and Retry-After (issue 4, deliver 7 on REST).

The model is a real, deliberately slow ONNX model (``protocol_models.slow``: a chain of
512x512 MatMul + Tanh), served with one instance, no batching and a queue of one, so that
concurrent requests overflow it.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import orjson

from ferry.formats import ImportOptions, import_model
from ferry.repository import Repository
from protocol_models import slow
from rest_server import make_engine, serve

WIDTH, LAYERS, ROWS = 512, 30, 256


async def test_a_full_queue_answers_429_with_retry_after_and_no_5xx(tmp_path):
    repo = Repository(tmp_path / "repo")
    import_model(repo, slow(tmp_path, width=WIDTH, layers=LAYERS), "slow",
                 options=ImportOptions(sample_count=2))
    (repo.root / "slow" / "config.toml").write_text(
        "instances = 1\nmax_queue = 1\nmax_waiting = 0\nwarmup = false\n"
        "[runtime]\nintra_op_threads = 1\n[batching]\nenabled = false\n")
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [ROWS, WIDTH],
                        "parameters": {"binary_data_size": ROWS * WIDTH * 4}}]}
    header = orjson.dumps(body)
    payload = header + np.ones((ROWS, WIDTH), dtype=np.float32).tobytes()
    with serve(make_engine(repo), repo, max_body_bytes=8 << 20) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=120) as client:
            responses = await asyncio.gather(*(
                client.post("/v2/models/slow/infer", content=payload,
                            headers={"inference-header-content-length": str(len(header))})
                for _ in range(8)))
            statuses = sorted(r.status_code for r in responses)
            assert set(statuses) <= {200, 429}, statuses
            assert 200 in statuses and 429 in statuses, statuses
            for refused in (r for r in responses if r.status_code == 429):
                assert int(refused.headers["retry-after"]) >= 1
                assert "slow" in refused.json()["error"]
            # Once the queue drains, the model answers again.
            again = await client.post("/v2/models/slow/infer", content=payload, headers={
                "inference-header-content-length": str(len(header))})
            assert again.status_code == 200
