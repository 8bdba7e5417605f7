"""The engine over a real repository with real ONNX models and the real ONNX Runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from builders import mlp_onnx
from ferry.call import INTERNAL as CALL
from ferry.engine import Engine, ModelConfig
from ferry.errors import InputError, NotFoundError, RateLimitedError
from ferry.formats import import_model
from ferry.inference import InferRequest, RequestedOutput, Tensor
from ferry.repository import Repository
from ferry.runtimes import load_runtime


def _import(repo: Repository, tmp_path: Path, name: str, seed: int) -> None:
    folder = tmp_path / f"{name}-{seed}"
    folder.mkdir()
    import_model(repo, mlp_onnx(folder / "m.onnx", seed=seed), name)


def _request(x: np.ndarray, model: str = "mlp", version: str | None = None,
             **kwargs: object) -> InferRequest:
    return InferRequest(model, [Tensor("x", "FP32", x.shape, x)], model_version=version,
                        **kwargs)  # type: ignore[arg-type]


def _reference(repo: Repository, name: str, version: int, x: np.ndarray) -> np.ndarray:
    stored = repo.open(f"{name}:{version}")
    with load_runtime("onnxruntime", stored.artifact_path, stored.manifest.signature) as rt:
        return rt.predict({"x": x})["scores"]


@pytest.fixture
def two_versions(repo: Repository, tmp_path: Path) -> Repository:
    _import(repo, tmp_path, "mlp", seed=1)
    _import(repo, tmp_path, "mlp", seed=2)
    return repo


async def test_infer_answers_like_the_runtime_and_reports_the_version(two_versions):
    engine = Engine(two_versions)
    await engine.start()
    try:
        x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
        response = await engine.infer(CALL, _request(x, id="r-1"))
        assert response.model_version == "2" and response.id == "r-1"
        (out,) = response.outputs
        assert out.name == "scores" and out.datatype == "FP32" and out.shape == (3, 3)
        np.testing.assert_allclose(out.data, _reference(two_versions, "mlp", 2, x), rtol=1e-6)
        assert engine.ready(CALL) and engine.model_ready(CALL, "mlp") and not engine.model_ready(CALL, "mlp", "1")
    finally:
        await engine.stop()
    assert not engine.ready(CALL)


async def test_pinned_versions_serve_side_by_side(two_versions):
    engine = Engine(two_versions, models=["mlp:1", "mlp:2"])
    await engine.start()
    try:
        x = np.ones((1, 4), np.float32)
        one = await engine.infer(CALL, _request(x, version="1"))
        two = await engine.infer(CALL, _request(x, version="2"))
        np.testing.assert_allclose(one.outputs[0].data, _reference(two_versions, "mlp", 1, x))
        np.testing.assert_allclose(two.outputs[0].data, _reference(two_versions, "mlp", 2, x))
        assert engine.model_metadata(CALL, "mlp").versions == ["1", "2"]
        assert [(e.name, e.version, e.state) for e in engine.repository_index(CALL)] == [
            ("mlp", "1", "READY"), ("mlp", "2", "READY")]
    finally:
        await engine.stop()


@pytest.mark.parametrize("instances", [1, 2])
async def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
        repo, tmp_path, instances):
    _import(repo, tmp_path, "mlp", seed=3)
    # inline_below_ms=0 forces the thread path, where requests gather while it is busy.
    engine = Engine(repo, defaults=ModelConfig.model_validate(
        {"instances": instances, "inline_below_ms": 0.0, "max_queue": 1000,
         "batching": {"max_batch_size": 16}}))
    await engine.start()
    try:
        rng = np.random.default_rng(1)
        inputs = [rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32)
                  for _ in range(300)]
        answers = await asyncio.gather(*(engine.infer(CALL, _request(x)) for x in inputs))
        for x, answer in zip(inputs, answers, strict=True):
            np.testing.assert_allclose(answer.outputs[0].data, _reference(repo, "mlp", 1, x),
                                       rtol=1e-5, atol=1e-6)
        body, _ = engine.metrics.render()
        text = body.decode()
        # Batching really happened: some runtime call took more than one request's rows.
        counts = [line for line in text.splitlines()
                  if line.startswith('ferry_batch_size_count{model="mlp"}')]
        calls = float(counts[0].rsplit(" ", 1)[1])
        assert calls < 300
    finally:
        await engine.stop()


async def test_validation_errors_name_the_problem_before_any_runtime_work(repo, tmp_path):
    _import(repo, tmp_path, "mlp", seed=4)
    engine = Engine(repo)
    await engine.start()
    try:
        with pytest.raises(InputError, match=r"input 'x': expected FP32 with shape \[-1, 4\], "
                                             r"got shape \[2, 5\]"):
            await engine.infer(CALL, _request(np.zeros((2, 5), np.float32)))
        with pytest.raises(InputError, match="got INT64"):
            await engine.infer(CALL, _request(np.zeros((2, 4), np.int64)))
        with pytest.raises(InputError, match="missing input 'x'"):
            await engine.infer(CALL, InferRequest("mlp", []))
        with pytest.raises(NotFoundError, match="unknown model 'nope'"):
            await engine.infer(CALL, _request(np.zeros((1, 4), np.float32), model="nope"))
        with pytest.raises(NotFoundError, match="no served version '7'"):
            await engine.infer(CALL, _request(np.zeros((1, 4), np.float32), version="7"))
        with pytest.raises(NotFoundError, match="unknown output 'prob'.*'scores'"):
            await engine.infer(CALL, _request(np.zeros((1, 4), np.float32),
                                        outputs=[RequestedOutput("prob")]))
    finally:
        await engine.stop()


async def test_a_full_queue_is_refused_at_once(repo, tmp_path):
    _import(repo, tmp_path, "mlp", seed=5)
    engine = Engine(repo, defaults=ModelConfig.model_validate(
        {"max_queue": 2, "max_waiting": 0, "inline_below_ms": 0.0,
         "batching": {"max_batch_size": 1}}))
    await engine.start()
    try:
        x = np.zeros((1, 4), np.float32)
        results = await asyncio.gather(*(engine.infer(CALL, _request(x)) for _ in range(50)),
                                       return_exceptions=True)
        refused = [r for r in results if isinstance(r, RateLimitedError)]
        answered = [r for r in results if not isinstance(r, BaseException)]
        assert refused and answered
        assert len(refused) + len(answered) == 50
        assert all(r.retry_after > 0 for r in refused)
    finally:
        await engine.stop()


async def test_past_a_full_queue_requests_wait_in_line_and_all_are_answered(repo, tmp_path):
    # The default: back-pressure. 50 requests at once on a queue of 2 all get right answers.
    _import(repo, tmp_path, "mlp", seed=5)
    engine = Engine(repo, defaults=ModelConfig.model_validate(
        {"max_queue": 2, "inline_below_ms": 0.0, "batching": {"max_batch_size": 1}}))
    await engine.start()
    try:
        x = np.random.default_rng(3).standard_normal((1, 4)).astype(np.float32)
        expected = _reference(repo, "mlp", 1, x)
        results = await asyncio.gather(*(engine.infer(CALL, _request(x)) for _ in range(50)),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors[:3]
        for response in results:
            np.testing.assert_allclose(response.outputs[0].data, expected, rtol=1e-6)
    finally:
        await engine.stop()


async def test_the_waiting_line_is_bounded_in_length_and_in_time(repo, tmp_path):
    _import(repo, tmp_path, "mlp", seed=5)
    engine = Engine(repo, defaults=ModelConfig.model_validate(
        {"max_queue": 2, "max_waiting": 3, "inline_below_ms": 0.0,
         "batching": {"max_batch_size": 1}}))
    await engine.start()
    try:
        x = np.zeros((1, 4), np.float32)
        results = await asyncio.gather(*(engine.infer(CALL, _request(x)) for _ in range(40)),
                                       return_exceptions=True)
        refused = [r for r in results if isinstance(r, RateLimitedError)]
        answered = [r for r in results if not isinstance(r, BaseException)]
        assert len(refused) + len(answered) == 40
        # One runs, 2 queue, 3 wait in line: the other 34 are refused at once.
        assert 5 <= len(answered) <= 8 and refused
        assert all("the limit is 5" in r.message for r in refused)
    finally:
        await engine.stop()
    slow = Engine(repo, defaults=ModelConfig.model_validate(
        {"max_queue": 1, "max_waiting": 100, "max_wait_ms": 1.0, "inline_below_ms": 0.0,
         "batching": {"enabled": False}}))
    await slow.start()
    try:
        results = await asyncio.gather(*(slow.infer(CALL, _request(x)) for _ in range(60)),
                                       return_exceptions=True)
        waited = [r for r in results if isinstance(r, RateLimitedError)]
        # Some of the 58 in line cannot start within 1 ms: refused with 429, naming why.
        assert waited and all("in line for room" in r.message for r in waited)
        assert all(not isinstance(r, BaseException) or isinstance(r, RateLimitedError)
                   for r in results)
    finally:
        await slow.stop()


async def test_hot_swap_three_times_under_load_fails_no_request(repo, tmp_path):
    _import(repo, tmp_path, "mlp", seed=10)
    engine = Engine(repo, defaults=ModelConfig.model_validate({"inline_below_ms": 0.0}))
    await engine.start()
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    expected = {"1": _reference(repo, "mlp", 1, x)}
    answers: list[tuple[str, np.ndarray]] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            try:
                response = await engine.infer(CALL, _request(x))
            except Exception as exc:
                errors.append(exc)
            else:
                answers.append((response.model_version, response.outputs[0].data))

    clients = [asyncio.create_task(client()) for _ in range(8)]
    try:
        for seed in (11, 12, 13):
            await asyncio.sleep(0.05)
            version = await asyncio.to_thread(_import, repo, tmp_path, "mlp", seed)
            del version
            latest = repo.versions("mlp")[-1]
            expected[str(latest)] = _reference(repo, "mlp", latest, x)
            await engine.load_model(CALL, "mlp")
            assert engine.model_metadata(CALL, "mlp").versions == [str(latest)]
        await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*clients)
        await engine.stop()
    assert errors == []
    assert {v for v, _ in answers} == {"1", "2", "3", "4"}
    for version, data in answers:
        np.testing.assert_allclose(data, expected[version], rtol=1e-6)


async def test_unload_then_load_again(repo, tmp_path):
    _import(repo, tmp_path, "mlp", seed=20)
    engine = Engine(repo)
    await engine.start()
    try:
        await engine.unload_model(CALL, "mlp")
        assert not engine.model_ready(CALL, "mlp")
        assert [(e.name, e.state, e.reason) for e in engine.repository_index(CALL)] == [
            ("mlp", "UNAVAILABLE", "unloaded")]
        assert engine.repository_index(CALL, ready_only=True) == []
        with pytest.raises(NotFoundError, match="not loaded"):
            await engine.infer(CALL, _request(np.zeros((1, 4), np.float32)))
        await engine.load_model(CALL, "mlp")
        assert engine.model_ready(CALL, "mlp", "1")
        with pytest.raises(NotFoundError):
            await engine.load_model(CALL, "ghost")
    finally:
        await engine.stop()


async def test_inline_and_threaded_paths_agree(repo, tmp_path):
    _import(repo, tmp_path, "mlp", seed=30)
    x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    outs = []
    for inline in (10.0, 0.0):
        engine = Engine(repo, defaults=ModelConfig.model_validate({"inline_below_ms": inline}))
        await engine.start()
        try:
            outs.append((await engine.infer(CALL, _request(x))).outputs[0].data)
        finally:
            await engine.stop()
    np.testing.assert_array_equal(outs[0], outs[1])


async def test_start_refuses_an_empty_repository_and_unknown_models(repo, tmp_path):
    from ferry.errors import ConfigError

    with pytest.raises(ConfigError, match="holds no model"):
        await Engine(repo).start()
    _import(repo, tmp_path, "mlp", seed=40)
    with pytest.raises(NotFoundError, match="'ghost'"):
        await Engine(repo, models=["ghost"]).start()
    with pytest.raises(NotFoundError, match="no version 9"):
        await Engine(repo, models=["mlp:9"]).start()


def _fixed_shape_onnx(path: Path) -> Path:
    """A model whose input is exactly [2, 4]: no batch axis, so it must never be batched."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(
        np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["scores"])], "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 3])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _sample(engine: Engine, family: str, **labels: str) -> float:
    """One sample of the engine's Prometheus exposition (0.0 when absent)."""
    wanted = family + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in engine.metrics.render()[0].decode().splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_model_without_batch_axis_is_never_batched(repo, tmp_path):
    import_model(repo, _fixed_shape_onnx(tmp_path / "fixed.onnx"), "fixed")
    engine = Engine(repo, defaults=ModelConfig.model_validate(
        {"inline_below_ms": 0.0, "max_queue": 1000, "batching": {"max_batch_size": 64}}))
    await engine.start()
    try:
        rng = np.random.default_rng(8)
        inputs = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(60)]
        answers = await asyncio.gather(*(engine.infer(CALL, _request(x, model="fixed"))
                                         for x in inputs))
        for x, answer in zip(inputs, answers, strict=True):
            assert answer.outputs[0].shape == (2, 3)
            np.testing.assert_allclose(answer.outputs[0].data,
                                       _reference(repo, "fixed", 1, x), rtol=1e-5, atol=1e-6)
        # One runtime call per request, although 60 arrived together.
        assert _sample(engine, "ferry_batch_size_count", model="fixed") == 60
        assert _sample(engine, "ferry_queue_depth", model="fixed") == 0
        with pytest.raises(InputError, match=r"input 'x'.*\[2, 4\]"):
            await engine.infer(CALL, _request(np.zeros((4, 4), np.float32), model="fixed"))
    finally:
        await engine.stop()


async def test_metrics_record_load_queue_compute_batch_and_inflight(repo, tmp_path):
    _import(repo, tmp_path, "mlp", seed=50)
    engine = Engine(repo, defaults=ModelConfig.model_validate({"inline_below_ms": 0.0}))
    await engine.start()
    try:
        x = np.ones((3, 4), np.float32)
        await asyncio.gather(*(engine.infer(CALL, _request(x)) for _ in range(20)))
        assert _sample(engine, "ferry_model_load_seconds", model="mlp", version="1") > 0
        assert _sample(engine, "ferry_stage_duration_seconds_count",
                       model="mlp", stage="queue") == 20
        calls = _sample(engine, "ferry_stage_duration_seconds_count",
                        model="mlp", stage="compute")
        assert 1 <= calls <= 20
        assert _sample(engine, "ferry_batch_size_count", model="mlp") == calls
        assert _sample(engine, "ferry_batch_size_sum", model="mlp") == 60  # every row once
        assert _sample(engine, "ferry_inflight_requests", model="mlp") == 0
        assert _sample(engine, "ferry_queue_depth", model="mlp") == 0
    finally:
        await engine.stop()


@pytest.mark.parametrize("version", ["9" * 5000, "\uff11", "-1", "1.0", " 1"],
                         ids=["5000-digits", "fullwidth-one", "negative", "decimal", "space"])
async def test_a_version_string_that_names_no_version_is_not_found(repo, tmp_path, version):
    _import(repo, tmp_path, "mlp", seed=60)
    engine = Engine(repo)
    await engine.start()
    try:
        assert not engine.model_ready(CALL, "mlp", version)
        with pytest.raises(NotFoundError, match="no served version"):
            engine.model_metadata(CALL, "mlp", version)
        with pytest.raises(NotFoundError, match=r"no served version .*\(versions: 1\)"):
            await engine.infer(CALL, _request(np.zeros((1, 4), np.float32), version=version))
    finally:
        await engine.stop()


async def test_a_stopped_engine_loads_nothing(repo, tmp_path):
    from ferry.errors import UnavailableError

    _import(repo, tmp_path, "mlp", seed=70)
    engine = Engine(repo)
    await engine.start()
    await engine.stop()
    with pytest.raises(UnavailableError, match="shutting down"):
        await engine.load_model(CALL, "mlp")
    with pytest.raises(UnavailableError, match="shutting down"):
        await engine.infer(CALL, _request(np.zeros((1, 4), np.float32)))
    assert not engine.model_ready(CALL, "mlp") and not engine.live(CALL)


async def test_a_model_config_beside_the_model_sets_its_versions_and_is_checked(repo, tmp_path):
    from ferry.errors import ConfigError

    for seed in (80, 81, 82):
        _import(repo, tmp_path, "mlp", seed=seed)
    config = repo.root / "mlp" / "config.toml"
    config.write_text('version_policy = "latest:2"\n[batching]\nmax_batch_size = 8\n')
    engine = Engine(repo)
    await engine.start()
    try:
        assert engine.model_metadata(CALL, "mlp").versions == ["2", "3"]
        config.write_text('version_policy = "all"\n')
        await engine.load_model(CALL, "mlp")  # a reload reads the file again
        assert engine.model_metadata(CALL, "mlp").versions == ["1", "2", "3"]
        config.write_text("[batching]\nmax_batch_sise = 8\n")
        with pytest.raises(ConfigError, match=r"config.toml: unknown setting "
                                              r"'batching.max_batch_sise'"):
            await engine.load_model(CALL, "mlp")
        assert engine.model_metadata(CALL, "mlp").versions == ["1", "2", "3"]  # still served
    finally:
        await engine.stop()


async def test_a_cheap_model_batches_requests_that_arrive_together_and_not_lone_ones(
        repo, tmp_path):
    """Inline for a lone request; a crowd in one loop turn is batched; lone again, inline."""
    _import(repo, tmp_path, "mlp", seed=50)
    engine = Engine(repo, defaults=ModelConfig.model_validate({"inline_below_ms": 10.0}))
    await engine.start()
    rng = np.random.default_rng(5)

    def batches() -> tuple[float, float]:
        return (_sample(engine, "ferry_batch_size_count", model="mlp"),
                _sample(engine, "ferry_batch_size_sum", model="mlp"))

    async def crowd() -> tuple[float, float]:
        before = batches()
        xs = [rng.standard_normal((1, 4)).astype(np.float32) for _ in range(8)]
        answers = await asyncio.gather(*(engine.infer(CALL, _request(x)) for x in xs))
        for x, answer in zip(xs, answers, strict=True):
            np.testing.assert_allclose(answer.outputs[0].data, _reference(repo, "mlp", 1, x),
                                       rtol=1e-6)
        after = batches()
        return after[0] - before[0], after[1] - before[1]

    try:
        # Idle: the first runs inline; the seven that came with it are one batch.
        assert await crowd() == (2, 8)
        # Now in batching mode: the next crowd is a single batch of eight.
        assert await crowd() == (1, 8)
        for _ in range(40):  # lone requests, one per loop turn: back to inline
            await engine.infer(CALL, _request(rng.standard_normal((1, 4)).astype(np.float32)))
        assert await crowd() == (2, 8)
    finally:
        await engine.stop()


@pytest.mark.parametrize("name", ["nope", "../../etc", "n" * 100_000, ""],
                         ids=["missing", "traversal", "100k-chars", "empty"])
async def test_loading_or_unloading_a_name_the_repository_lacks_keeps_nothing(
        repo, tmp_path, name):
    """Issue 13: each refused name left an UNAVAILABLE row (and a lock) behind forever."""
    _import(repo, tmp_path, "mlp", seed=90)
    engine = Engine(repo)
    await engine.start()
    try:
        before = engine.repository_index(CALL)
        for _ in range(3):
            with pytest.raises((NotFoundError, InputError)) as caught:
                await engine.load_model(CALL, name)
            assert len(caught.value.message) < 600
            with pytest.raises((NotFoundError, InputError)):
                await engine.unload_model(CALL, name)
        assert engine.repository_index(CALL) == before
        assert set(engine._locks) <= {"mlp"}  # no per-name lock kept for refused names
    finally:
        await engine.stop()


async def test_a_failed_load_of_a_model_in_the_repository_still_reports_why(repo, tmp_path):
    from ferry.errors import ConfigError

    _import(repo, tmp_path, "mlp", seed=91)
    _import(repo, tmp_path, "other", seed=92)
    (repo.root / "other" / "config.toml").write_text("instancez = 2\n")
    engine = Engine(repo, models=["mlp"])
    await engine.start()
    try:
        with pytest.raises(ConfigError):
            await engine.load_model(CALL, "other")
        rows = {e.name: e for e in engine.repository_index(CALL)}
        assert rows["other"].state == "UNAVAILABLE" and "instancez" in rows["other"].reason
    finally:
        await engine.stop()


async def test_long_names_are_cut_in_not_found_messages(repo, tmp_path):
    """Issue 13: a 100,000-character name made gRPC's status details overflow."""
    _import(repo, tmp_path, "mlp", seed=93)
    engine = Engine(repo)
    await engine.start()
    long = "n" * 100_000
    x = np.zeros((1, 4), np.float32)
    try:
        requests = [
            _request(x, model=long),
            _request(x, version=long),
            InferRequest("mlp", [Tensor(long, "FP32", x.shape, x)]),
            _request(x, outputs=[RequestedOutput(long)]),
        ]
        for request in requests:
            with pytest.raises((NotFoundError, InputError)) as caught:
                await engine.infer(CALL, request)
            assert "more characters)" in caught.value.message
            assert len(caught.value.message) < 600
    finally:
        await engine.stop()


async def test_the_classification_output_parameter_is_refused(repo, tmp_path):
    """Issue 13: Triton's top-k ``classification`` was silently ignored; ferry refuses it."""
    _import(repo, tmp_path, "mlp", seed=94)
    engine = Engine(repo)
    await engine.start()
    try:
        request = _request(np.zeros((1, 4), np.float32),
                           outputs=[RequestedOutput("scores", {"classification": 2})])
        with pytest.raises(InputError, match="output 'scores': the 'classification' "
                                             "parameter is not supported"):
            await engine.infer(CALL, request)
    finally:
        await engine.stop()


async def test_metrics_label_only_served_models(repo, tmp_path):
    _import(repo, tmp_path, "mlp", seed=95)
    engine = Engine(repo)
    await engine.start()
    try:
        metrics = engine.metrics
        metrics.request(model="mlp", version="1", protocol="grpc", status="OK", seconds=0.0)
        metrics.request(model="zzz", version="7", protocol="grpc", status="NOT_FOUND",
                        seconds=0.0)
        # (the exposition writes the labels in name order)
        assert _sample(engine, "ferry_requests_total", model="mlp", protocol="grpc",
                       status="OK", version="1") == 1
        assert _sample(engine, "ferry_requests_total", model="", protocol="grpc",
                       status="NOT_FOUND", version="") == 1
        await engine.unload_model(CALL, "mlp")
        metrics.request(model="mlp", version="1", protocol="grpc", status="NOT_FOUND",
                        seconds=0.0)
        assert _sample(engine, "ferry_requests_total", model="", protocol="grpc",
                       status="NOT_FOUND", version="") == 2
    finally:
        await engine.stop()
