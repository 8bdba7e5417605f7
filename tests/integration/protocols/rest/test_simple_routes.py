"""The seed's /predict and TF Serving's :predict on a real server (issue 4, deliver 4)."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from rest_server import MLP_LABELS

ROWS = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]]


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def expected(server):
    """The mlp's scores for ROWS from ONNX Runtime directly, to compare the server with."""
    stored = server.repo.open("mlp")
    session = ort.InferenceSession(str(stored.artifact_path))
    return session.run(None, {"x": np.asarray(ROWS, dtype=np.float32)})[0]


def test_predict_with_a_named_model_returns_rows_labels_and_version(http, expected):
    response = http.post("/predict/mlp", json={"data": ROWS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "mlp" and body["version"] == "1"
    assert np.allclose(body["predictions"], expected, rtol=1e-6)
    assert body["labels"] == [MLP_LABELS[i] for i in np.argmax(expected, axis=1)]


def test_predict_with_a_version_and_a_single_unnested_row(http, expected):
    response = http.post("/predict/mlp/versions/1", json={"data": ROWS[0]})
    assert response.status_code == 200, response.text
    assert np.allclose(response.json()["predictions"], expected[:1], rtol=1e-6)


def test_predict_with_several_inputs_by_name_and_no_labels(http):
    response = http.post("/predict/pair", json={"inputs": {"a": [[1, 2, 3, 4]],
                                                           "b": [[1, 1, 1, 1]]}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"] == [[2.0, 3.0, 4.0, 5.0]] and "labels" not in body


def test_predict_data_for_a_model_with_several_inputs_names_them(http):
    response = http.post("/predict/pair", json={"data": [[1, 2, 3, 4]]})
    assert response.status_code == 400
    assert "has 2 inputs ('a', 'b')" in response.json()["error"]


def test_predict_default_model(http, server):
    default = server.engine.default_model()
    response = http.post("/predict", json={"inputs": {"a": [[1, 2, 3, 4]], "b": [[0, 0, 0, 0]]}}
                         if default == "pair" else {"data": ROWS})
    if default is None:
        assert response.status_code == 404 and "no default model" in response.json()["error"]
    else:
        assert response.status_code == 200, response.text
        assert response.json()["model"] == default


def test_tfserving_row_format(http, expected):
    response = http.post("/v1/models/mlp:predict", json={"instances": ROWS,
                                                         "signature_name": "serving_default"})
    assert response.status_code == 200, response.text
    assert np.allclose(response.json()["predictions"], expected, rtol=1e-6)


def test_tfserving_columnar_format_with_version(http, expected):
    response = http.post("/v1/models/mlp/versions/1:predict", json={"inputs": ROWS})
    assert response.status_code == 200, response.text
    assert np.allclose(response.json()["outputs"], expected, rtol=1e-6)


def test_tfserving_named_inputs_and_several_outputs(http):
    rows = {"instances": [{"a": [1, 2, 3, 4], "b": [1, 1, 1, 1]},
                          {"a": [0, 0, 0, 0], "b": [2, 2, 2, 2]}]}
    response = http.post("/v1/models/pair:predict", json=rows)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [
        {"sum": [2.0, 3.0, 4.0, 5.0], "diff": [0.0, 1.0, 2.0, 3.0]},
        {"sum": [2.0, 2.0, 2.0, 2.0], "diff": [-2.0, -2.0, -2.0, -2.0]}]
    columns = http.post("/v1/models/pair:predict",
                        json={"inputs": {"a": [[1, 2, 3, 4]], "b": [[1, 1, 1, 1]]}})
    assert columns.json()["outputs"] == {"sum": [[2.0, 3.0, 4.0, 5.0]],
                                         "diff": [[0.0, 1.0, 2.0, 3.0]]}


def test_tfserving_rows_that_name_different_inputs(http):
    response = http.post("/v1/models/pair:predict", json={
        "instances": [{"a": [1, 2, 3, 4], "b": [1, 1, 1, 1]}, {"a": [0, 0, 0, 0]}]})
    assert response.status_code == 400
    assert "every row must name the same inputs" in response.json()["error"]


def test_tfserving_model_status(http):
    status = http.get("/v1/models/mlp").json()
    assert status["ready"] is True and status["name"] == "mlp"
    assert status["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    assert http.get("/v1/models/mlp/versions/1").json()["ready"] is True
    missing = http.get("/v1/models/mlp/versions/7")
    assert missing.status_code == 404 and "7" in missing.json()["error"]
