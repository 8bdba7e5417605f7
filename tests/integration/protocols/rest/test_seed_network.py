"""The seed network (Keras Dense 64-64-10 trained on digits, imported with labels) served over
REST: /predict as the seed's users call it, V2 and TF Serving give the same answers.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from ferry.demo import DEMO_LABELS
from ferry.formats import ImportOptions, import_model
from ferry.repository import Repository
from rest_server import make_engine, serve


@pytest.fixture(scope="module")
def digits(tmp_path_factory, seed_h5, seed_data):
    repo = Repository(tmp_path_factory.mktemp("digits") / "repo")
    import_model(repo, seed_h5, "digits",
                 options=ImportOptions(samples=seed_data.x_test[:32], labels=DEMO_LABELS))
    with serve(make_engine(repo), repo) as served:
        yield served


def test_predict_answers_the_test_split_with_labels(digits, seed_data):
    rows = seed_data.x_test.tolist()
    with httpx.Client(base_url=digits.url, timeout=60) as http:
        response = http.post("/predict", json={"data": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "digits" and body["version"] == "1"
    scores = np.asarray(body["predictions"])
    assert scores.shape == (len(rows), 10)
    assert body["labels"] == [DEMO_LABELS[i] for i in np.argmax(scores, axis=1)]
    accuracy = np.mean(np.argmax(scores, axis=1) == seed_data.y_test)
    assert accuracy > 0.8  # three epochs of training already classify digits


def test_v2_binary_tfserving_and_predict_agree(digits, seed_data):
    rows = seed_data.x_test[:5].astype(np.float32)
    with triton.InferenceServerClient(digits.url.removeprefix("http://")) as client:
        meta = client.get_model_metadata("digits")
        tensor = triton.InferInput(meta["inputs"][0]["name"], list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=True)
        v2 = client.infer("digits", [tensor]).as_numpy(meta["outputs"][0]["name"])
    with httpx.Client(base_url=digits.url, timeout=60) as http:
        simple = http.post("/predict/digits", json={"data": rows.tolist()}).json()
        tf = http.post("/v1/models/digits:predict", json={"instances": rows.tolist()}).json()
    assert np.allclose(v2, simple["predictions"], rtol=1e-6)
    assert np.allclose(v2, tf["predictions"], rtol=1e-6)
