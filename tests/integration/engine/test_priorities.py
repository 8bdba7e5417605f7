"""Priorities between models under global overload (issue 16, deliver 3).

Two real, deliberately slow ONNX models share one server. Past ``max_backlog`` requests
waiting in all queues together, a model of lower priority gives way (429, naming why)
while the higher one is still admitted and answered; below it, both are admitted.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ferry.call import INTERNAL as CALL
from ferry.engine import Engine
from ferry.errors import RateLimitedError
from ferry.formats import ImportOptions, import_model
from ferry.inference import InferRequest, Tensor
from ferry.repository import Repository
from protocol_models import slow

pytestmark = pytest.mark.timeout(300)

X = np.ones((256, 512), dtype=np.float32)  # ~20 ms a run on one thread here
CONFIG = ("instances = 1\nwarmup = false\ninline_below_ms = 0.0\npriority = {priority}\n"
          "[runtime]\nintra_op_threads = 1\n[batching]\nenabled = false\n")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    root = tmp_path_factory.mktemp("priorities")
    repo = Repository(root / "repo")
    model = slow(root, layers=200)
    for name, priority in (("high", 10), ("low", 0)):
        import_model(repo, model, name, options=ImportOptions(sample_count=2))
        (repo.root / name / "config.toml").write_text(CONFIG.format(priority=priority))
    return repo


def _request(model: str) -> InferRequest:
    return InferRequest(model_name=model, inputs=[Tensor("x", "FP32", X.shape, X)])


async def _backlog(engine: Engine, model: str, at_least: int) -> None:
    """Until ``model``'s queue holds ``at_least`` requests (bounded: 30 s)."""
    for _ in range(3000):
        snap = engine._table[model]  # read only: the queue depth
        if snap.latest.queued >= at_least:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{model}'s queue never held {at_least} requests")


async def test_under_global_overload_the_lower_priority_model_gives_way(
        repo: Repository) -> None:
    engine = Engine(repo, max_backlog=4)
    await engine.start()
    high: list[asyncio.Future[object]] = []
    try:
        # Twelve requests for the high model: one runs, the rest wait: the server is
        # overloaded (the model is slow: the last of them waits a quarter of a second).
        high = [asyncio.ensure_future(engine.infer(CALL, _request("high"))) for _ in range(12)]
        await _backlog(engine, "high", 8)
        with pytest.raises(RateLimitedError) as refused:
            await engine.infer(CALL, _request("low"))
        assert "'low' (priority 0) gives way to models of priority 10" in refused.value.message
        assert "max_backlog is 4" in refused.value.message
        # The high model is still admitted and every one of its requests answered.
        also = await engine.infer(CALL, _request("high"))
        answers = await asyncio.gather(*high)
        assert all(a.model_name == "high" for a in [*answers, also])
        # Once the backlog is gone, the low model is served again.
        answer = await engine.infer(CALL, _request("low"))
        np.testing.assert_allclose(answer.outputs[0].data, also.outputs[0].data, rtol=1e-6)
    finally:
        await asyncio.gather(*high, return_exceptions=True)
        await engine.stop()


async def test_without_max_backlog_or_below_it_no_model_gives_way(repo: Repository) -> None:
    for engine in (Engine(repo), Engine(repo, max_backlog=100)):
        await engine.start()
        high: list[asyncio.Future[object]] = []
        try:
            high = [asyncio.ensure_future(engine.infer(CALL, _request("high")))
                    for _ in range(12)]
            await _backlog(engine, "high", 8)
            low = await engine.infer(CALL, _request("low"))
            assert low.model_name == "low"
            await asyncio.gather(*high)
        finally:
            await asyncio.gather(*high, return_exceptions=True)
            await engine.stop()
