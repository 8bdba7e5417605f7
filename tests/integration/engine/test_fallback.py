"""The engine's fallbacks beyond the open breaker (issue 16 item 4), on real models.

The doors are covered by tests/integration/protocols/test_breaker_fallback.py; here the
engine facade is called directly: a full queue sends requests to the fallback, a fallback
of another model answers under its own name, and a fallback that is no longer served, or
whose own breaker is open, gives a 503 that says so. The models are scikit-learn estimators
trained on iris; :class:`~sklearn_custom.BrokenOnDemandClassifier` is a deliberately faulty
test model that breaks (or turns slow) while its flag file exists.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris

from ferry.call import CallContext
from ferry.engine import Engine
from ferry.errors import InternalError, UnavailableError
from ferry.formats import ImportOptions, import_model
from ferry.inference import InferRequest, InferResponse, Tensor
from ferry.repository import Repository
from sklearn_custom import BrokenOnDemandClassifier, NearestMeanClassifier

pytestmark = pytest.mark.timeout(120)

ROWS = load_iris().data[::30].astype(np.float32)


def _add(repo: Repository, model: object, work: Path, name: str) -> None:
    path = work / f"{name}.joblib"
    joblib.dump(model, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    import_model(repo, path, name, options=ImportOptions(trust_sha256=digest))


def _call() -> CallContext:
    return CallContext("test", "internal", "test")


async def _infer(engine: Engine, model: str, call: CallContext | None = None
                 ) -> InferResponse:
    request = InferRequest(model, [Tensor("input", "FP32", ROWS.shape, ROWS)])
    return await engine.infer(call or _call(), request)


async def test_a_full_queue_sends_requests_to_the_fallback(tmp_path):
    x, y = load_iris(return_X_y=True)
    repo = Repository(tmp_path / "repo")
    flag = tmp_path / "busy.broken"
    _add(repo, NearestMeanClassifier().fit(x, y), tmp_path, "busy")
    _add(repo, BrokenOnDemandClassifier(str(flag)).fit(x, y), tmp_path, "busy")
    # Three requests may wait, none in line past them, and every call on the version's
    # thread: of six sent at once, version 2 takes at most four, version 1 the others.
    (repo.root / "busy" / "config.toml").write_text(
        'version_policy = "all"\nfallback = 1\nmax_queue = 3\nmax_waiting = 0\n'
        'inline_below_ms = 0\n')
    engine = Engine(repo)
    await engine.start()
    try:
        flag.write_text("slow")  # version 2 takes 0.2 s a call from now on
        calls = [_call() for _ in range(6)]
        answers = await asyncio.gather(*(_infer(engine, "busy", call) for call in calls))
        fell = [call.fallback for call in calls if call.fallback is not None]
        by_version = sorted(a.model_version for a in answers)
        assert fell and set(fell) == {"busy:1"}, by_version
        assert by_version.count("1") == len(fell) and "2" in by_version
        assert all(a.model_name == "busy" for a in answers)
        assert engine.metrics.fallbacks.labels("busy").value == len(fell)
    finally:
        flag.unlink(missing_ok=True)
        await engine.stop(timeout=5.0)


async def test_a_fallback_of_another_model_answers_under_its_name_while_it_is_served(tmp_path):
    x, y = load_iris(return_X_y=True)
    repo = Repository(tmp_path / "repo")
    main_flag, spare_flag = tmp_path / "main.broken", tmp_path / "spare.broken"
    _add(repo, BrokenOnDemandClassifier(str(main_flag)).fit(x, y), tmp_path, "main")
    _add(repo, BrokenOnDemandClassifier(str(spare_flag)).fit(x, y), tmp_path, "spare")
    breaker = "[breaker]\nfailures = 1\ncooldown_s = 600\n"
    (repo.root / "main" / "config.toml").write_text(f'fallback = "spare"\n{breaker}')
    (repo.root / "spare" / "config.toml").write_text(breaker)
    engine = Engine(repo)
    await engine.start()
    try:
        main_flag.touch()
        with pytest.raises(InternalError, match="'main' version 1 failed"):
            await _infer(engine, "main")
        call = _call()
        answer = await _infer(engine, "main", call)  # open: spare answers
        assert (answer.model_name, answer.model_version, call.fallback) == ("spare", "1",
                                                                          "spare:1")
        # The fallback's own breaker opens too: then nothing answers for main.
        spare_flag.touch()
        with pytest.raises(InternalError):
            await _infer(engine, "spare")
        with pytest.raises(UnavailableError) as caught:
            await _infer(engine, "main")
        assert "the circuit breaker of its fallback spare:1 is open too" in str(caught.value)
        assert 500 < caught.value.retry_after <= 600
        # Unloaded: the fallback is not served any more, and the 503 says so.
        await engine.unload_model(_call(), "spare")
        with pytest.raises(UnavailableError) as caught:
            await _infer(engine, "main")
        assert ("model 'main' version 1 is unavailable (its circuit breaker is open) and its "
                "fallback spare is not served") in str(caught.value)
    finally:
        main_flag.unlink(missing_ok=True)
        spare_flag.unlink(missing_ok=True)
        await engine.stop(timeout=5.0)
