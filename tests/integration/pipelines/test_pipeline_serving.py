"""A pipeline served like one model (issue 19 items 1 and 3): scikit-learn scaler -> Keras
network -> softmax -> top-3 labels, on every door, answering exactly like the steps run by
hand; and a member's hot swap under concurrent load with zero failed requests.

Real parts only: a MinMaxScaler converted by skl2onnx, the seed network trained here on the
bundled digits (tests/integration/conftest.py), real REST (uvicorn, ferry's HTTP/1.1
protocol) and gRPC servers on 127.0.0.1, ferry's own clients and httpx.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import ferry
from extras import require
from ferry.call import INTERNAL
from ferry.client import GrpcClient
from ferry.client_rest import RestClient
from ferry.demo import DEMO_LABELS
from ferry.engine import Engine
from ferry.formats import ImportOptions, import_model
from ferry.pipelines import create_pipeline
from ferry.pipelines.local import load_pipeline
from ferry.repository import Repository
from grpc_server import serve_grpc
from rest_server import serve

require("tensorflow")
pytestmark = pytest.mark.timeout(600)

PIPELINE = """kind = "pipeline"
description = "raw digits (0-16) -> scaler -> seed network -> softmax -> top 3 labels"

[steps.scale]
model = "scaler"
inputs = "inputs.pixels"

[steps.net]
model = "digits"
inputs = "scale.variable"

[steps.probs]
transform = "softmax"
inputs = "net.{logits}"

[steps.top]
transform = "top_k"
k = 3
labels = true
inputs = "probs.output"

[outputs]
probabilities = "probs.output"
top_labels = "top.labels"
top_scores = "top.scores"
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory, seed_h5, seed_data):
    """A repository with scaler:1, digits:1 (the seed network) and the pipeline digits-top3:1."""
    from skl2onnx import to_onnx
    from sklearn.preprocessing import MinMaxScaler

    root = tmp_path_factory.mktemp("pipeline")
    repo = Repository(root / "repo")
    raw = np.round(seed_data.x_test * 16).astype(np.float32)  # the digits as scanned, 0-16
    scaler = MinMaxScaler().fit(np.vstack([np.zeros(64), np.full(64, 16.0)]).astype(np.float32))
    (root / "scaler.onnx").write_bytes(to_onnx(scaler, raw[:1]).SerializeToString())
    import_model(repo, root / "scaler.onnx", "scaler")
    net = import_model(repo, seed_h5, "digits", options=ImportOptions(labels=DEMO_LABELS))
    logits = net.signature.outputs[0].name
    (root / "pipeline.toml").write_text(PIPELINE.replace("{logits}", logits))
    manifest, _ = create_pipeline(repo, root / "pipeline.toml", "digits-top3")
    return repo, root, raw, scaler, logits, manifest


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _by_hand(repo: Repository, raw: np.ndarray, net: str = "digits:1") -> dict:
    """Each step on its own: the stored scaler and network on ONNX Runtime, numpy after."""
    scaler = ort.InferenceSession(str(repo.open("scaler:1").artifact_path))
    network = ort.InferenceSession(str(repo.open(net).artifact_path))
    scaled = scaler.run(None, {"X": raw})[0]
    logits = network.run(None, {network.get_inputs()[0].name: scaled})[0]
    probs = _softmax(logits)
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :3]
    return {"probabilities": probs, "top_scores": np.take_along_axis(probs, order, axis=-1),
            "top_labels": [[DEMO_LABELS[i] for i in row] for row in order.tolist()],
            "logits": logits, "scaled": scaled}


def _check(answer: dict, want: dict) -> None:
    np.testing.assert_allclose(answer["probabilities"], want["probabilities"], rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(answer["top_scores"], want["top_scores"], rtol=1e-5, atol=1e-7)
    labels = [[v.decode() if isinstance(v, bytes) else v for v in row]
              for row in np.asarray(answer["top_labels"]).tolist()]
    assert labels == want["top_labels"]


def test_steps_by_hand_match_the_source_frameworks(built, seed_h5):
    """The hand-run reference itself equals the scaler in scikit-learn and the net in Keras."""
    from ferry.formats.keras import import_keras

    repo, _, raw, scaler, _, _ = built
    want = _by_hand(repo, raw[:32])
    np.testing.assert_allclose(want["scaled"], scaler.transform(raw[:32]), rtol=1e-6, atol=1e-6)
    keras = import_keras().models.load_model(seed_h5, compile=False)
    np.testing.assert_allclose(want["logits"], keras.predict(want["scaled"], verbose=0),
                               rtol=1e-4, atol=1e-4)


def test_in_process_rest_grpc_predict_and_tf_serving_answer_like_the_steps(built):
    repo, _, raw, _, _, manifest = built
    x = raw[:24]
    want = _by_hand(repo, x)
    assert [s.name for s in manifest.signature.inputs] == ["pixels"]
    assert manifest.labels == DEMO_LABELS

    with load_pipeline(repo, repo.open("digits-top3")) as runtime:  # in-process
        _check(runtime.predict({"pixels": x}), want)
    with ferry.load(repo.root, "digits-top3") as model:  # the public in-process API
        assert [s.name for s in model.signature.outputs] == [
            "probabilities", "top_labels", "top_scores"]
        _check(model.predict({"pixels": x}), want)
        _check(model.predict(x), want)

    with serve(Engine(repo), repo) as served:
        with RestClient(served.url) as client:
            meta = client.model_metadata("digits-top3")
            assert meta.platform == "ferry_pipeline"
            assert [(s.name, s.datatype, tuple(s.shape)) for s in meta.outputs] == [
                ("probabilities", "FP32", (-1, 10)), ("top_labels", "BYTES", (-1, 3)),
                ("top_scores", "FP32", (-1, 3))]
            response = client.infer("digits-top3", {"pixels": x})
            _check({t.name: t.data for t in response.outputs}, want)
        predict = httpx.post(f"{served.url}/predict/digits-top3", json={"data": x.tolist()})
        assert predict.status_code == 200, predict.text
        body = predict.json()
        np.testing.assert_allclose(body["predictions"], want["probabilities"], rtol=1e-5,
                                   atol=1e-7)
        assert body["labels"] == [row[0] for row in want["top_labels"]]
        tfs = httpx.post(f"{served.url}/v1/models/digits-top3:predict",
                         json={"instances": x[:3].tolist()})
        assert tfs.status_code == 200, tfs.text
        rows = tfs.json()["predictions"]
        assert [row["top_labels"] for row in rows] == want["top_labels"][:3]
        metrics = httpx.get(f"{served.url}/metrics").text
        for step in ("scale", "net", "probs", "top"):
            assert f'model="digits-top3",stage="step:{step}"' in metrics
        bad = httpx.post(f"{served.url}/v2/models/digits-top3/infer", json={"inputs": [
            {"name": "pixels", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]})
        assert bad.status_code == 400
        assert "input 'pixels'" in bad.json()["error"] and "[-1, 64]" in bad.json()["error"]

    with serve_grpc(Engine(repo)) as grpc_served, GrpcClient(grpc_served.target) as client:
        response = client.infer("digits-top3", {"pixels": x})
        _check({t.name: t.data for t in response.outputs}, want)


def _scaled_copy(source: Path, target: Path, factor: float) -> Path:
    """The network with its last layer's weights and bias times ``factor`` (other logits)."""
    model = onnx.load(str(source))
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.shape in ((64, 10), (10,)):
            tensor.CopyFrom(numpy_helper.from_array((array * factor).astype(array.dtype),
                                                    tensor.name))
    onnx.save(model, str(target))
    return target


def test_a_members_hot_swap_under_load_fails_no_request(built):
    repo, root, raw, _, _, _ = built
    x = raw[:4]
    old = _by_hand(repo, x)
    source = repo.open("digits:1").artifact_path
    stop = threading.Event()
    answers: list[np.ndarray] = []
    failures: list[str] = []

    def client_loop(url: str) -> None:
        with RestClient(url) as client:
            while not stop.is_set():
                try:
                    response = client.infer("digits-top3", {"pixels": x},
                                            outputs=["probabilities"])
                    answers.append(response.outputs[0].data)
                except Exception as exc:  # any failure counts
                    failures.append(f"{type(exc).__name__}: {exc}")

    with serve(Engine(repo), repo) as served:
        threads = [threading.Thread(target=client_loop, args=(served.url,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        before = len(answers)
        path = _scaled_copy(source, root / "digits-v2.onnx", 2.0)
        import_model(repo, path, "digits", options=ImportOptions(labels=DEMO_LABELS))
        served.call(served.engine.load_model(INTERNAL, "digits"))
        swapped = len(answers)
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(30)
        versions = served.engine.model_metadata(INTERNAL, "digits").versions
        assert versions == ["2"], versions
    new = _by_hand(repo, x, "digits:2")
    assert not failures, failures[:3]
    assert before > 10 and len(answers) - swapped > 10, (before, swapped, len(answers))
    assert not np.allclose(old["probabilities"], new["probabilities"], rtol=1e-3)
    for i, answer in enumerate(answers):
        is_old = np.allclose(answer, old["probabilities"], rtol=1e-5, atol=1e-7)
        is_new = np.allclose(answer, new["probabilities"], rtol=1e-5, atol=1e-7)
        assert is_old or is_new, i
        # Each client has one request in flight: those admitted to the old member before
        # the swap may end after it; every later one runs on the new member.
        if i >= swapped + len(threads):
            assert is_new, f"answer {i} came after the swap from the old member"
