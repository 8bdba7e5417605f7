"""A pipeline is authorized as one model (docs/serving.md): a key with ``infer`` on the
pipeline runs its members through it, and is refused on a member called directly."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from builders import mlp_onnx
from ferry.engine import Engine
from ferry.formats import ImportOptions, import_model
from ferry.pipelines import create_pipeline
from ferry.repository import Repository
from ferry.security import KeyStore
from ferry.server import security_policies
from ferry.settings import SecuritySettings
from rest_server import serve
from secrets_used import remember

pytestmark = pytest.mark.timeout(120)


def test_infer_on_the_pipeline_runs_its_members_and_only_through_it(tmp_path):
    repo = Repository(tmp_path / "repo")
    import_model(repo, mlp_onnx(tmp_path / "m.onnx"), "member",
                 options=ImportOptions(sample_count=4))
    (tmp_path / "p.toml").write_text("""kind = "pipeline"
[steps.m]
model = "member"
inputs = "inputs.x"
[steps.p]
transform = "softmax"
inputs = "m.scores"
[outputs]
probabilities = "p.output"
""")
    create_pipeline(repo, tmp_path / "p.toml", "scored")
    store = KeyStore(tmp_path / "keys.json")
    key = store.add("app", ["infer:scored"])
    remember(key)
    policies, _ = security_policies(SecuritySettings(api_keys_file=tmp_path / "keys.json"))
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                        "data": [0.5, -1.0, 2.0, 0.0]}]}
    auth = {"Authorization": f"Bearer {key}"}
    with serve(Engine(repo, policies=policies), repo) as served:
        ok = httpx.post(f"{served.url}/v2/models/scored/infer", json=body, headers=auth)
        assert ok.status_code == 200, ok.text
        probabilities = np.array(ok.json()["outputs"][0]["data"])
        assert probabilities.shape == (3,) and abs(probabilities.sum() - 1) < 1e-6
        direct = httpx.post(f"{served.url}/v2/models/member/infer", json=body, headers=auth)
        assert direct.status_code == 403, direct.text
        assert "infer of model 'member' is not allowed for this caller" in direct.text
        anonymous = httpx.post(f"{served.url}/v2/models/scored/infer", json=body)
        assert anonymous.status_code == 401
    assert key not in ok.text + direct.text + anonymous.text
