"""Every converted format, served by a real ``ferry serve`` and queried by real clients.

The format tests check each runtime in process; this one checks the whole chain a user
runs: models trained here on scikit-learn's bundled data (a scikit-learn ColumnTransformer
pipeline with a string column and string labels, an XGBoost classifier, a LightGBM
regressor, a PMML document), imported into one repository, served at once, and answered
over V2 JSON (httpx), V2 binary (tritonclient.http), gRPC (tritonclient.grpc) and the seed's
``/predict``, each compared with the framework's own predictions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ferry.formats import import_model
from ferry.repository import Repository
from serving import Server, ferry_serve

pytestmark = pytest.mark.e2e

NUMERIC = ["sepal length (cm)", "sepal width (cm)", "petal width (cm)"]
PMML = """<?xml version="1.0" encoding="UTF-8"?>
<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/>
  <DataDictionary numberOfFields="3">
    <DataField name="x1" optype="continuous" dataType="double"/>
    <DataField name="x2" optype="continuous" dataType="double"/>
    <DataField name="y" optype="continuous" dataType="double"/>
  </DataDictionary>
  <RegressionModel functionName="regression">
    <MiningSchema><MiningField name="y" usageType="target"/>
      <MiningField name="x1"/><MiningField name="x2"/></MiningSchema>
    <RegressionTable intercept="1.5"><NumericPredictor name="x1" coefficient="2.0"/>
      <NumericPredictor name="x2" coefficient="-0.5"/></RegressionTable>
  </RegressionModel>
</PMML>
"""


@dataclass
class Zoo:
    server: Server
    mixed: Any
    frame: pd.DataFrame
    booster: Any
    iris_x: np.ndarray
    regressor: Any
    diabetes_x: np.ndarray


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zoo]:
    work = tmp_path_factory.mktemp("formats")
    repo = Repository(work / "repo")

    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns=["target"])
    frame["size"] = pd.cut(frame.pop("petal length (cm)"), 3,
                           labels=["short", "medium", "long"]).astype(str)
    frame = frame.astype({c: np.float32 for c in NUMERIC})
    species = np.asarray(data.target_names)[data.target]
    mixed = Pipeline([
        ("columns", ColumnTransformer([
            ("num", StandardScaler(), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["size"]),
        ])),
        ("clf", LogisticRegression(max_iter=300)),
    ]).fit(frame, species)
    sio.dump(mixed, work / "mixed.skops")
    import_model(repo, work / "mixed.skops", "mixed")

    iris_x, iris_y = load_iris(return_X_y=True)
    iris_x = iris_x.astype(np.float32)
    booster = xgb.XGBClassifier(n_estimators=15, max_depth=3).fit(iris_x, iris_y)
    booster.save_model(work / "iris.json")
    import_model(repo, work / "iris.json", "iris")

    diabetes_x, diabetes_y = load_diabetes(return_X_y=True)
    diabetes_x = diabetes_x.astype(np.float32)
    regressor = lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(diabetes_x, diabetes_y)
    regressor.booster_.save_model(work / "diabetes.txt")
    import_model(repo, work / "diabetes.txt", "diabetes")

    (work / "linear.pmml").write_text(PMML)
    import_model(repo, work / "linear.pmml", "linear")

    with ferry_serve(repo.root, timeout=120) as server:
        yield Zoo(server, mixed, frame, booster, iris_x, regressor, diabetes_x)


def _outputs(reply: dict[str, Any]) -> dict[str, Any]:
    return {out["name"]: out for out in reply["outputs"]}


def test_sklearn_columns_with_strings_over_v2_json(zoo: Zoo) -> None:
    rows = zoo.frame.iloc[::7]
    inputs = [{"name": name, "datatype": "FP32", "shape": [len(rows), 1],
               "data": rows[column].tolist()}
              for name, column in zip(["sepal_length__cm_", "sepal_width__cm_",
                                       "petal_width__cm_"], NUMERIC, strict=True)]
    inputs.append({"name": "size", "datatype": "BYTES", "shape": [len(rows), 1],
                   "data": rows["size"].tolist()})
    reply = httpx.post(f"{zoo.server.url}/v2/models/mixed/infer",
                       json={"id": "m-1", "inputs": inputs}, timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["id"] == "m-1" and body["model_name"] == "mixed"
    out = _outputs(body)
    assert out["label"]["datatype"] == "BYTES"
    assert out["label"]["data"] == zoo.mixed.predict(rows).tolist()
    proba = np.asarray(out["probabilities"]["data"]).reshape(out["probabilities"]["shape"])
    np.testing.assert_allclose(proba, zoo.mixed.predict_proba(rows), atol=1e-4)


def test_sklearn_string_in_a_number_column_is_a_400(zoo: Zoo) -> None:
    inputs = [{"name": name, "datatype": "BYTES" if name == "size" else "FP32",
               "shape": [1, 1], "data": ["x"]}
              for name in ("sepal_length__cm_", "sepal_width__cm_", "petal_width__cm_",
                           "size")]
    reply = httpx.post(f"{zoo.server.url}/v2/models/mixed/infer", json={"inputs": inputs},
                       timeout=30)
    assert reply.status_code == 400
    assert "sepal_length__cm_" in reply.json()["error"]


def test_xgboost_over_tritonclient_http_binary_and_grpc(zoo: Zoo) -> None:
    x = zoo.iris_x[::5]
    want_labels = zoo.booster.predict(x)
    want_proba = zoo.booster.predict_proba(x)
    http = httpclient.InferenceServerClient(zoo.server.url.removeprefix("http://"))
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = http.infer("iris", [tensor], outputs=[
        httpclient.InferRequestedOutput("label", binary_data=True),
        httpclient.InferRequestedOutput("probabilities", binary_data=True)])
    np.testing.assert_array_equal(result.as_numpy("label"), want_labels)
    np.testing.assert_allclose(result.as_numpy("probabilities"), want_proba, atol=1e-5)

    grpc = grpcclient.InferenceServerClient(zoo.server.grpc)
    tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = grpc.infer("iris", [tensor])
    np.testing.assert_array_equal(result.as_numpy("label"), want_labels)
    np.testing.assert_allclose(result.as_numpy("probabilities"), want_proba, atol=1e-5)
    grpc.close()


def test_lightgbm_regressor_over_predict(zoo: Zoo) -> None:
    x = zoo.diabetes_x[:20]
    reply = httpx.post(f"{zoo.server.url}/predict/diabetes", json={"data": x.tolist()},
                       timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "diabetes" and body["version"] == "1"
    got = np.asarray(body["predictions"], dtype=np.float64).reshape(-1)
    want = zoo.regressor.predict(x)
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-4)


def test_pmml_served_by_the_jvm_over_v2(zoo: Zoo) -> None:
    reply = httpx.post(f"{zoo.server.url}/v2/models/linear/infer", json={"inputs": [
        {"name": "input", "datatype": "FP64", "shape": [2, 2], "data": [1, 2, 0, 0]}]},
        timeout=30)
    assert reply.status_code == 200, reply.text
    out = _outputs(reply.json())
    assert out["predictions"]["data"] == [2.5, 1.5]
    meta = httpx.get(f"{zoo.server.url}/v2/models/linear", timeout=10).json()
    assert meta["platform"] and meta["inputs"][0]["datatype"] == "FP64"


def test_every_model_is_ready_and_listed(zoo: Zoo) -> None:
    index = httpx.post(f"{zoo.server.url}/v2/repository/index", json={}, timeout=10).json()
    ready = {entry["name"] for entry in index if entry.get("state") == "READY"}
    assert ready == {"mixed", "iris", "diabetes", "linear"}
