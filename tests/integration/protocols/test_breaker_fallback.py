"""Issue 16 item 4: a circuit breaker per model version, and a fallback version answering.

Real servers on 127.0.0.1 with real clients, through every door: ferry's HTTP/1.1 lane,
the ASGI app's routes under ferry's protocol (a chunked body), the ASGI app under stock
uvicorn with h11, and gRPC. The models are real scikit-learn estimators trained here on
iris: ``flaky`` serves version 1 (healthy) and version 2 (a
:class:`~sklearn_custom.BrokenOnDemandClassifier`, a deliberately faulty test model that
breaks while its flag file exists) with ``fallback = "previous"``; ``solo`` is broken the
same way and has no fallback; ``slowpoke`` version 2 turns slow instead, over its breaker's
latency bound, and falls back to version 1 (asked through ``/predict``).

Each door's test breaks version 2, sees three 500s open its breaker, sees version 1 answer
instead — named in the body, in ``X-Ferry-Fallback`` (REST) or in the trailing metadata
(gRPC) — and the metrics show it; mends the model, and sees the breaker close after its
cool-down. ``solo`` then shows the refusal without a fallback: 503 / UNAVAILABLE with the
time left.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import joblib
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris

from ferry.engine import Engine
from ferry.errors import ConfigError
from ferry.formats import ImportOptions, import_model
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from ferry.protocols.grpc.server import bind, build_server
from ferry.repository import Repository
from rest_server import serve
from sklearn_custom import BrokenOnDemandClassifier, NearestMeanClassifier

pytestmark = pytest.mark.timeout(300)

ROWS = load_iris().data[::30].astype(np.float32)  # 5 rows
COOLDOWN = 1.0
BREAKER = f"[breaker]\nfailures = 3\nwindow_s = 60\ncooldown_s = {COOLDOWN}\n"


@dataclass
class Models:
    repo: Repository
    flaky: Path  # while these files exist, the models they name are broken (or slow)
    solo: Path
    slowpoke: Path


def _add(repo: Repository, model: object, work: Path, name: str) -> None:
    path = work / f"{name}.joblib"
    joblib.dump(model, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    import_model(repo, path, name, options=ImportOptions(trust_sha256=digest))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    work = tmp_path_factory.mktemp("breaker")
    x, y = load_iris(return_X_y=True)
    repo = Repository(work / "repo")
    flaky, solo, slowpoke = (work / f"{name}.broken" for name in ("flaky", "solo", "slow"))
    _add(repo, NearestMeanClassifier().fit(x, y), work, "flaky")
    _add(repo, BrokenOnDemandClassifier(str(flaky)).fit(x, y), work, "flaky")
    _add(repo, BrokenOnDemandClassifier(str(solo)).fit(x, y), work, "solo")
    _add(repo, NearestMeanClassifier().fit(x, y), work, "slowpoke")
    _add(repo, BrokenOnDemandClassifier(str(slowpoke)).fit(x, y), work, "slowpoke")
    (repo.root / "flaky" / "config.toml").write_text(
        f'version_policy = "latest:2"\nfallback = "previous"\n{BREAKER}')
    (repo.root / "solo" / "config.toml").write_text(BREAKER)
    (repo.root / "slowpoke" / "config.toml").write_text(
        f'version_policy = "all"\nfallback = 1\n{BREAKER}latency_ms = 100\n')
    return Models(repo, flaky, solo, slowpoke)


@contextlib.contextmanager
def broken(flag: Path, how: str = "") -> Iterator[None]:
    flag.write_text(how)
    try:
        yield
    finally:
        flag.unlink(missing_ok=True)


@dataclass
class Answer:
    status: int
    model: str | None = None
    version: str | None = None
    fallback: str | None = None
    error: str = ""
    retry_after: str | None = None


class RestDoor:
    """Inference over REST: V2 JSON (plain or chunked) or ``/predict``."""

    def __init__(self, url: str, route: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)
        self.route = route

    def infer(self, model: str) -> Answer:
        if self.route == "predict":
            path, doc = f"/predict/{model}", {"data": ROWS.tolist()}
        else:
            path, doc = f"/v2/models/{model}/infer", {"inputs": [
                {"name": "input", "datatype": "FP32", "shape": list(ROWS.shape),
                 "data": ROWS.ravel().tolist()}]}
        body = orjson.dumps(doc)
        content: bytes | Iterator[bytes] = body
        if self.route == "chunked":  # the app's route reads it, not the lane
            content = iter([body[:9], body[9:]])
        reply = self.client.post(path, content=content,
                                 headers={"content-type": "application/json"})
        got = reply.json()
        answer = Answer(reply.status_code, fallback=reply.headers.get("x-ferry-fallback"),
                        retry_after=reply.headers.get("retry-after"))
        if reply.status_code != 200:
            answer.error = got["error"]
        elif self.route == "predict":
            answer.model, answer.version = got["model"], got["version"]
            assert len(got["labels"]) == len(ROWS)
        else:
            answer.model, answer.version = got["model_name"], got["model_version"]
            assert {o["name"] for o in got["outputs"]} == {"probabilities", "label"}
        return answer


class GrpcDoor:
    """Inference over gRPC (ModelInfer, raw contents)."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def infer(self, model: str) -> Answer:
        request = pb.ModelInferRequest(model_name=model)
        request.inputs.add(name="input", datatype="FP32", shape=list(ROWS.shape))
        request.raw_input_contents.append(ROWS.tobytes())
        try:
            reply, call = self.stub.ModelInfer.with_call(request, timeout=30)
        except grpc.RpcError as error:
            status = {grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503}.get(
                error.code(), -1)
            retry = dict(error.trailing_metadata() or ()).get("retry-after")
            return Answer(status, error=error.details(), retry_after=retry)
        trailing = dict(call.trailing_metadata() or ())
        return Answer(200, reply.model_name, reply.model_version,
                      fallback=trailing.get("x-ferry-fallback"))


DOORS = ["http11", "asgi route", "uvicorn-h11", "grpc"]


@pytest.fixture(params=DOORS)
def door(request, models: Models):
    lane = "h11" if request.param == "uvicorn-h11" else True
    with serve(Engine(models.repo), models.repo, lane=lane) as rest:
        if request.param == "grpc":
            async def start() -> tuple[grpc.aio.Server, int]:
                server = build_server(rest.engine)
                port = bind(server, "127.0.0.1", 0)
                await server.start()
                return server, port

            server, port = rest.call(start())
            client = GrpcDoor(f"127.0.0.1:{port}")
            try:
                yield rest, client
            finally:
                client.channel.close()
                rest.call(server.stop(grace=1))
        else:
            client = RestDoor(rest.url, "chunked" if request.param == "asgi route" else "v2")
            try:
                yield rest, client
            finally:
                client.client.close()


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _state(metrics, model: str, version: str) -> float | None:
    return metrics.get(("ferry_breaker_state", (("model", model), ("version", version))))


def _fallbacks(metrics, model: str) -> float:
    return metrics.get(("ferry_fallbacks_total", (("model", model),)), 0.0)


def test_the_breaker_opens_the_fallback_answers_and_it_closes_after_recovery(door, models):
    rest, client = door
    healthy = client.infer("flaky")
    assert (healthy.status, healthy.model, healthy.version, healthy.fallback) == (
        200, "flaky", "2", None)
    before = _metrics(rest.url)
    assert _state(before, "flaky", "2") == 0 and _state(before, "flaky", "1") == 0
    assert _fallbacks(before, "flaky") == 0

    with broken(models.flaky):
        for _ in range(3):  # each request runs on version 2 and fails: the breaker counts
            failed = client.infer("flaky")
            assert failed.status == 500, failed
            assert "flaky" in failed.error and "version 2 failed" in failed.error
            assert failed.fallback is None
        # Open: version 1 answers at once, and the answer names it.
        for _ in range(2):
            fell = client.infer("flaky")
            assert (fell.status, fell.model, fell.version, fell.fallback) == (
                200, "flaky", "1", "flaky:1"), fell
        during = _metrics(rest.url)
        assert _state(during, "flaky", "2") == 2  # open
        assert _state(during, "flaky", "1") == 0
        assert _fallbacks(during, "flaky") == 2

    # Mended: after the cool-down a trial request reaches version 2, succeeds, and closes it.
    deadline = time.monotonic() + 15 * COOLDOWN
    while True:
        answer = client.infer("flaky")
        assert answer.status == 200, answer
        if answer.fallback is None:
            break
        assert answer.version == "1"
        assert time.monotonic() < deadline, "the breaker did not close after its cool-down"
        time.sleep(COOLDOWN / 4)
    assert (answer.model, answer.version) == ("flaky", "2")
    after = _metrics(rest.url)
    assert _state(after, "flaky", "2") == 0
    assert client.infer("flaky").fallback is None

    # Without a fallback an open breaker refuses at once: 503 with the time left.
    with broken(models.solo):
        for _ in range(3):
            assert client.infer("solo").status == 500
        refused = client.infer("solo")
    assert refused.status == 503, refused
    assert "circuit breaker is open" in refused.error and "'solo' version 1" in refused.error
    assert refused.retry_after == "1"
    assert _state(_metrics(rest.url), "solo", "1") == 2


@pytest.mark.parametrize("lane", [True, "h11"], ids=["http11", "uvicorn-h11"])
def test_answers_over_the_latency_bound_open_it_too(models, lane):
    with serve(Engine(models.repo), models.repo, lane=lane) as rest:
        client = RestDoor(rest.url, "predict")
        try:
            _slow_then_mended(rest, client, models)
        finally:
            client.client.close()


def _slow_then_mended(rest, client: RestDoor, models: Models) -> None:
    assert client.infer("slowpoke").version == "2"
    with broken(models.slowpoke, "slow"):
        for _ in range(3):  # answered, but each slower than latency_ms = 100
            slow = client.infer("slowpoke")
            assert (slow.status, slow.version, slow.fallback) == (200, "2", None)
        fell = client.infer("slowpoke")
        assert (fell.status, fell.model, fell.version, fell.fallback) == (
            200, "slowpoke", "1", "slowpoke:1")
        assert _state(_metrics(rest.url), "slowpoke", "2") == 2
    time.sleep(COOLDOWN * 1.2)
    mended = client.infer("slowpoke")
    assert (mended.version, mended.fallback) == ("2", None)
    metrics = _metrics(rest.url)
    assert _state(metrics, "slowpoke", "2") == 0
    assert _fallbacks(metrics, "slowpoke") == 1


@pytest.mark.parametrize(("config", "message"), [
    ('fallback = 1\n', "version 2: its fallback flaky:1 is not served (served versions: 2)"),
    ('fallback = "previous"\n', "fallback = 'previous' needs an older served version"),
    ('fallback = "nowhere:1"\n', "its fallback nowhere:1 is not served"),
    ('version_policy = "all"\nfallback = "solo"\n', "its fallback solo takes other inputs"),
], ids=["version", "previous", "model", "inputs"])
def test_a_fallback_that_is_not_served_is_named_at_load(tmp_path, config, message):
    x, y = load_iris(return_X_y=True)
    repo = Repository(tmp_path / "repo")
    _add(repo, NearestMeanClassifier().fit(x, y), tmp_path, "flaky")
    _add(repo, NearestMeanClassifier().fit(x, y), tmp_path, "flaky")
    _add(repo, NearestMeanClassifier().fit(x[:, :3], y), tmp_path, "solo")  # 3 features
    (repo.root / "flaky" / "config.toml").write_text(config)
    engine = Engine(repo)

    async def start() -> None:
        try:
            await engine.start()
        finally:
            await engine.stop(timeout=1.0)

    with pytest.raises(ConfigError) as caught:
        asyncio.run(start())
    assert message in str(caught.value)
    assert "'flaky'" in str(caught.value)
