"""On one usable core, an instance freed while requests wait lets the clients it just
answered join its next batch (``ServedVersion._complete``), so closed-loop clients do not
split into two halves that alternate with half-size batches.

Real ONNX Runtime on a deliberately slow model (so a batch computes for milliseconds on the
thread path); the number of usable cores is the only thing set by the test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

import ferry.engine.served as served_module
from ferry.call import INTERNAL as CALL
from ferry.engine import Engine, ModelConfig
from ferry.formats import import_model
from ferry.inference import InferRequest, Tensor
from ferry.repository import Repository
from protocol_models import slow

WIDTH = 1024  # a batch of 8 rows computes for tens of milliseconds: longer than the stagger
CLIENTS = 16
ROUNDS = 8


async def _closed_loop(engine: Engine) -> list[np.ndarray]:
    """CLIENTS clients, each sending ROUNDS requests one after the other; the second half
    starts while the first half's batch computes, as clients of a network server fall."""
    answers: list[np.ndarray] = []

    async def client(index: int) -> None:
        if index >= CLIENTS // 2:
            await asyncio.sleep(0.002)
        x = np.full((1, WIDTH), index / CLIENTS, np.float32)
        for _ in range(ROUNDS):
            response = await engine.infer(CALL, InferRequest("slow", [Tensor("x", "FP32",
                                                                              x.shape, x)]))
            answers.append(response.outputs[0].data)

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return answers


def _batches(engine: Engine) -> tuple[float, float]:
    """The batch-size histogram's sum and count (rows run, runtime calls)."""
    lines = engine.metrics.render()[0].decode().splitlines()

    def value(name: str) -> float:
        line = next(x for x in lines if x.startswith(f'ferry_batch_size_{name}{{model="slow"}}'))
        return float(line.rsplit(" ", 1)[1])

    return value("sum"), value("count")


@pytest.mark.parametrize(("cpus", "gathered"), [(1, True), (2, False)], ids=["one-core", "two"])
async def test_a_freed_instance_gathers_the_clients_it_answered_on_one_core(
        repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpus: int,
        gathered: bool) -> None:
    monkeypatch.setattr(served_module, "usable_cpus", lambda: cpus)
    import_model(repo, slow(tmp_path, width=WIDTH), "slow")
    engine = Engine(repo, defaults=ModelConfig.model_validate(
        {"instances": 1, "inline_below_ms": 0.0, "batching": {"max_batch_size": CLIENTS}}))
    await engine.start()
    try:
        answers = await _closed_loop(engine)
        rows, calls = _batches(engine)
    finally:
        await engine.stop()
    assert len(answers) == CLIENTS * ROUNDS and rows >= CLIENTS * ROUNDS
    mean = rows / calls
    if gathered:  # 8, then 16 a batch: every client in each batch after the first
        assert mean >= 0.75 * CLIENTS, f"batches of {mean:.1f} rows on average"
    else:  # two halves of 8 that alternate: the behaviour the gathering fixes
        assert mean <= 0.6 * CLIENTS, f"batches of {mean:.1f} rows on average"
