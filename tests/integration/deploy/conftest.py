"""A real model repository for the deployment tests, trained here on bundled data.

``iris``: a LightGBM classifier on scikit-learn's iris, converted to ONNX (served by ONNX
Runtime: an image needs only ``ferry[serve]``); ``wine``: an XGBoost classifier kept
native (``--native``: the image needs ``ferry[xgboost]`` too).
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from ferry.formats import ImportOptions, import_model
from ferry.repository import Repository
from tree_builders import dataset


@dataclass(frozen=True)
class DeployRepo:
    repo: Repository
    x: np.ndarray          # iris rows
    labels: np.ndarray     # LightGBM's own predicted classes for them


@pytest.fixture(scope="session")
def deploy_repo(tmp_path_factory: pytest.TempPathFactory) -> DeployRepo:
    root = tmp_path_factory.mktemp("deploy")
    repo = Repository(root / "model-repository")
    iris = dataset("iris")
    model = lgb.LGBMClassifier(n_estimators=8, max_depth=3, verbose=-1).fit(iris.x, iris.y)
    model.booster_.save_model(root / "iris.txt")
    assert import_model(repo, root / "iris.txt", "iris").runtime == "onnxruntime"
    wine = dataset("wine")
    booster = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(wine.x, wine.y)
    booster.save_model(root / "wine.json")
    manifest = import_model(repo, root / "wine.json", "wine", options=ImportOptions(native=True))
    assert manifest.runtime == "xgboost"
    return DeployRepo(repo, iris.x, model.predict(iris.x))
