"""A model repository on object storage (issue 20 item 4): ``s3://bucket/prefix`` via s3fs.

An S3-compatible server runs in the test on loopback (moto's server mode, on a free port);
ferry reaches it only through the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``). Models are logistic regressions trained
here on scikit-learn's bundled iris data, imported from skops files.

``ferry import --repository s3://...`` and ``ferry serve s3://... --watch`` run as a user
runs them (subprocesses). A version without its manifest, and one whose manifest does not
match its files, are never served; a version imported later is hot-swapped in. The cache
holds verified copies keyed by the manifest's sha256, bounded per model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

# ruff: noqa: E402
from extras import require

require("moto")
require("s3fs")
require("sklearn")
require("skops")

import boto3
import skops.io as sio
from moto.server import ThreadedMotoServer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from ferry.call import internal_call
from ferry.errors import InputError, IntegrityError, UntrustedArtifactError
from ferry.formats import import_model
from ferry.repository import Repository
from serving import ferry_serve, free_port

pytestmark = pytest.mark.timeout(300)

BUCKET = "models"
SECRET = "ferry-test-secret-Zq81xPw"  # must never appear in any output
ENV = {"AWS_ACCESS_KEY_ID": "AKIAFERRYTESTKEY", "AWS_SECRET_ACCESS_KEY": SECRET,
       "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The S3-compatible server, its bucket, and the environment that reaches it."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {**ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
           "FERRY_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("AWS_PROFILE", raising=False)
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client, env
    server.stop()


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    """Two different classifiers trained on iris, saved as skops files, and the rows."""
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    root = tmp_path_factory.mktemp("iris")
    strong = LogisticRegression(max_iter=500).fit(x, y)
    weak = LogisticRegression(C=0.01, max_iter=500).fit(x[:, ::-1], y)  # reversed features
    sio.dump(strong, root / "strong.skops")
    sio.dump(weak, root / "weak.skops")
    return {"x": x, "strong": (strong, root / "strong.skops"),
            "weak": (weak, root / "weak.skops")}


def _objects(client, prefix: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            for o in listed}


def _ferry(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferry", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, cwd=cwd, timeout=240)


def _infer(url: str, rows: np.ndarray) -> dict:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.ravel().tolist()}]}
    response = httpx.post(f"{url}/v2/models/iris/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _labels(answer: dict) -> list[int]:
    (label,) = [o for o in answer["outputs"] if o["name"] == "label"]
    return [int(v) for v in label["data"]]


def _wait(what, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what.__doc__}")


def test_import_to_s3_serve_from_it_and_only_complete_verified_versions_are_served(
        s3, iris, tmp_path):
    client, env = s3
    url = f"s3://{BUCKET}/live"
    strong, strong_file = iris["strong"]
    weak, weak_file = iris["weak"]
    x = iris["x"]

    done = _ferry("import", str(strong_file), "--name", "iris", "--repository", url,
                  env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"imported iris:1 (sklearn -> onnxruntime) into {url}/iris/1" in done.stdout
    assert not (tmp_path / "model-repository").exists()  # nothing written locally
    stored = _objects(client, "live/")
    assert sorted(stored) == [".locks/iris/1", "iris/1/manifest.json", "iris/1/model.onnx"]
    manifest = json.loads(stored["iris/1/manifest.json"])
    assert manifest["files"]["model.onnx"]["sha256"] == hashlib.sha256(
        stored["iris/1/model.onnx"]).hexdigest()

    with ferry_serve(None, url, "--watch", env={**env, "FERRY_WATCH_INTERVAL": "0.3"},
                     cwd=tmp_path) as server:
        assert f"from {url}" in server.output()
        assert _labels(_infer(server.url, x[::10])) == strong.predict(x[::10]).tolist()

        # A half-uploaded version: its files, no manifest. Invisible to every reader.
        client.put_object(Bucket=BUCKET, Key="live/iris/2/model.onnx",
                          Body=stored["iris/1/model.onnx"])
        # A version whose manifest does not match its file (written by hand, or corrupted).
        bad = {**manifest, "version": 3}
        client.put_object(Bucket=BUCKET, Key="live/iris/3/model.onnx",
                          Body=stored["iris/1/model.onnx"] + b"\0")
        client.put_object(Bucket=BUCKET, Key="live/iris/3/manifest.json",
                          Body=json.dumps(bad).encode())
        assert Repository(url).versions("iris") == [1, 3]
        with pytest.raises(IntegrityError, match=r"model iris:3: file 'model.onnx' does not "
                                                 r"match its recorded sha256"):
            Repository(url, cache_dir=tmp_path / "other-cache").open("iris:3")

        def refused():
            """the watcher tried iris:3 and kept the served version"""
            return "hot swap of iris failed, the served versions stay" in server.output()
        _wait(refused)
        meta = httpx.get(f"{server.url}/v2/models/iris", timeout=10).json()
        assert meta["versions"] == ["1"]
        assert _labels(_infer(server.url, x[::10])) == strong.predict(x[::10]).tolist()

        # A complete version imported later: the next free number, hot-swapped in.
        done = _ferry("import", str(weak_file), "--name", "iris", "--repository", url,
                      env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "imported iris:4" in done.stdout

        def swapped():
            """the watcher served iris:4"""
            return "4" in httpx.get(f"{server.url}/v2/models/iris", timeout=10).json()[
                "versions"]
        _wait(swapped)
        rows = np.ascontiguousarray(x[::10, ::-1])  # the new model reads reversed features
        answer = _infer(server.url, rows)
        assert answer["model_version"] == "4"
        expected = weak.predict(rows).tolist()
        assert _labels(answer) == expected and expected != strong.predict(rows).tolist()
        output = server.output()
    assert SECRET not in output and SECRET not in done.stdout + done.stderr


def test_cache_is_keyed_by_the_manifest_hash_verified_before_use_and_bounded(
        s3, iris, tmp_path):
    client, _ = s3
    url = f"s3://{BUCKET}/cache-test"
    writer = Repository(url, cache_dir=tmp_path / "writer")
    for _ in range(3):
        import_model(writer, iris["strong"][1], "iris")
    assert writer.versions("iris") == [1, 2, 3]

    repo = Repository(url, cache_dir=tmp_path / "reader", cache_versions=2)
    first = repo.open("iris:1")
    raw = (first.path / "manifest.json").read_bytes()
    assert raw == _objects(client, "cache-test/iris/1/")["manifest.json"]
    assert first.path == (tmp_path / "reader" / ".versions" / hashlib.sha256(raw).hexdigest()
                          / "iris" / "1")
    assert not os.access(first.artifact_path, os.W_OK) or os.getuid() == 0

    # Served from the cache: the remote file can go, the manifest is still read remotely.
    client.delete_object(Bucket=BUCKET, Key="cache-test/iris/1/model.onnx")
    assert repo.open("iris:1").path == first.path

    # A cached copy is checked before use: a changed byte is refused and the copy dropped.
    first.artifact_path.chmod(0o600)
    first.artifact_path.write_bytes(first.artifact_path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        repo.open("iris:1")
    assert not first.path.exists()
    with pytest.raises(IntegrityError, match=r"file 'model.onnx' is missing from "
                                             r"s3://models/cache-test"):
        repo.open("iris:1")  # downloaded again: the remote file is gone

    repo.open("iris:2")
    repo.open("iris:3")
    cached = sorted(p.parent.name + "/" + p.name
                    for p in (tmp_path / "reader" / ".versions").glob("*/iris/*"))
    assert cached == ["iris/2", "iris/3"]  # the bound: two versions of the model


def test_delete_hides_the_version_first_and_numbers_are_never_reused(s3, iris, tmp_path):
    client, _ = s3
    url = f"s3://{BUCKET}/delete-test"
    repo = Repository(url, cache_dir=tmp_path / "cache")
    import_model(repo, iris["strong"][1], "iris")
    import_model(repo, iris["strong"][1], "iris")
    assert repo.delete("iris:2") == [2]
    assert repo.versions("iris") == [1]
    assert "iris/2/model.onnx" not in _objects(client, "delete-test/")
    assert import_model(repo, iris["strong"][1], "iris").version == 3
    assert repo.models() == ["iris"]
    assert repo.manifest("iris").version == 3


def test_repository_commands_take_the_url(s3, iris, tmp_path, capsys):
    from ferry.cli import main
    from ferry.repository import SigningKey, TrustedKeys

    url = f"s3://{BUCKET}/cli"
    import_model(Repository(url, cache_dir=tmp_path / "cache"), iris["strong"][1], "iris")
    import_model(Repository(url, cache_dir=tmp_path / "cache"), iris["strong"][1], "iris")
    assert main(["--repo", url, "models", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["name"], row["versions"]) == ("iris", [1, 2])
    assert main(["--repo", url, "show", "iris:2"]) == 0
    assert "iris" in capsys.readouterr().out
    rows = iris["x"][::10]
    np.save(tmp_path / "rows.npy", rows)
    assert main(["--repo", url, "predict", "iris:2", "--input", str(tmp_path / "rows.npy"),
                 "--output", "label"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert _labels(answer) == iris["strong"][0].predict(rows).tolist()
    key = SigningKey.generate()
    key.write(tmp_path / "release.pem")
    assert main(["--repo", url, "sign", "iris:2", "--key", str(tmp_path / "release.pem")]) == 0
    assert Repository(url).signatures("iris:2")[0].key_id == key.key_id
    (tmp_path / "trusted").write_text(key.public_line("release") + "\n")
    trusting = Repository(url, trusted_keys=TrustedKeys(tmp_path / "trusted"),
                          cache_dir=tmp_path / "trusting")
    assert trusting.open("iris:2").manifest.version == 2
    with pytest.raises(UntrustedArtifactError, match=r"iris:1"):
        trusting.open("iris:1")  # unsigned: refused before any file is downloaded
    assert [p.name for p in (tmp_path / "trusting" / ".versions").glob("*/iris/*")] == ["2"]
    assert main(["--repo", url, "delete", "iris:1", "--yes"]) == 0
    assert Repository(url).versions("iris") == [2]


def test_concurrent_claims_get_distinct_numbers(s3, tmp_path):
    url = f"s3://{BUCKET}/claims"
    stores = [Repository(url, cache_dir=tmp_path / str(i)).storage for i in range(2)]
    got: list[int] = []
    lock = threading.Lock()

    def claim(store):
        for _ in range(4):
            number = store.claim("m")
            with lock:
                got.append(number)

    threads = [threading.Thread(target=claim, args=(stores[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(got) == list(range(1, 17))


def test_a_manifest_naming_a_path_outside_the_version_is_refused(s3, iris, tmp_path):
    client, _ = s3
    url = f"s3://{BUCKET}/escape"
    repo = Repository(url, cache_dir=tmp_path / "cache")
    manifest = import_model(repo, iris["strong"][1], "iris")
    evil = json.loads(manifest.to_json())
    evil["version"] = 2
    evil["files"] = {"../../../../escaped": evil["files"]["model.onnx"]}
    client.put_object(Bucket=BUCKET, Key="escape/iris/2/manifest.json",
                      Body=json.dumps(evil).encode())
    with pytest.raises(IntegrityError, match=r"lists file '\.\./\.\./\.\./\.\./escaped', "
                                             r"which is not a plain relative path"):
        Repository(url, cache_dir=tmp_path / "reader").open("iris:2")
    assert not list(tmp_path.rglob("escaped"))


def test_bad_urls_and_unreachable_buckets_are_one_clear_line(s3, tmp_path):
    _, env = s3
    with pytest.raises(InputError, match=r"invalid repository URL 's3://': expected "
                                         r"s3://BUCKET"):
        Repository("s3://")
    done = _ferry("serve", "s3://no-such-bucket/models", "--http-port", "0",
                  "--grpc-port", "0", env=env, cwd=tmp_path)
    assert done.returncode != 0
    assert "repository 's3://no-such-bucket/models' does not exist" in done.stderr
    assert "Traceback" not in done.stderr and SECRET not in done.stdout + done.stderr
    # Nothing listens there: refused in one line naming the URL, after one attempt.
    closed = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
              "AWS_MAX_ATTEMPTS": "1"}
    done = _ferry("--repo", "s3://models/prod", "models", env=closed, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "cannot list s3://models/prod" in done.stderr
    assert SECRET not in done.stdout + done.stderr


def _readme_block() -> list[str]:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("## From laptop to cluster", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n# repository-in-a-bucket\n(.*?)```", section, re.S)
    assert block, "the README's object-storage block is missing"
    return [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()
            if line.strip()]


def test_the_readme_bucket_commands_run_as_written(s3, tmp_path):
    lgb = require("lightgbm")
    _, env = s3
    commands = _readme_block()
    assert [c.split()[0] for c in commands] == ["pip", "export", "export", "ferry", "ferry"]
    assert "'.[serve,s3]'" in commands[0] and "requirements/constraints.txt" in commands[0]
    exported = {word.split("=")[0] for c in commands[1:3] for word in c.split()[1:]}
    assert exported == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    booster = lgb.LGBMClassifier(n_estimators=8, max_depth=3, verbose=-1).fit(x, y)
    booster.booster_.save_model(tmp_path / "iris.txt")
    done = _ferry(*shlex.split(commands[3])[1:], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    serve = shlex.split(commands[4])
    assert serve[:2] == ["ferry", "serve"]
    with ferry_serve(None, *serve[2:], env=env, cwd=tmp_path) as server:
        meta = httpx.get(f"{server.url}/v2/models/iris", timeout=10).json()
        name = meta["inputs"][0]["name"]
        body = {"inputs": [{"name": name, "datatype": "FP32", "shape": [15, 4],
                            "data": x[::10].ravel().tolist()}]}
        answer = httpx.post(f"{server.url}/v2/models/iris/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert _labels(answer.json()) == booster.predict(x[::10]).tolist()


async def test_a_models_config_toml_in_the_bucket_applies_and_follows_the_bucket(
        s3, iris, tmp_path):
    from ferry.engine import Engine

    client, _ = s3
    url = f"s3://{BUCKET}/config"
    writer = Repository(url, cache_dir=tmp_path / "writer")
    for _ in range(3):
        import_model(writer, iris["strong"][1], "iris")
    client.put_object(Bucket=BUCKET, Key="config/iris/config.toml",
                      Body=b'version_policy = "latest:2"\n')
    client.put_object(Bucket=BUCKET, Key="config/iris/.hidden", Body=b"not mirrored")
    repo = Repository(url, cache_dir=tmp_path / "server")
    engine = Engine(repo)
    await engine.start()
    try:
        assert sorted(engine.served_versions("iris")) == [2, 3]
        assert sorted(p.name for p in repo.model_dir("iris").iterdir()) == ["config.toml"]
        client.delete_object(Bucket=BUCKET, Key="config/iris/config.toml")
        assert list(repo.model_dir("iris").iterdir()) == []  # gone from the bucket: removed
        await engine.load_model(internal_call("test"), "iris")
        assert sorted(engine.served_versions("iris")) == [3]  # the default policy: latest
    finally:
        await engine.stop()


def test_ferry_load_reads_a_bucket(s3, iris, tmp_path):
    import ferry
    from ferry.errors import NotFoundError

    url = f"s3://{BUCKET}/in-process"
    import_model(Repository(url, cache_dir=tmp_path / "w"), iris["strong"][1], "iris")
    strong, x = iris["strong"][0], iris["x"]
    with ferry.load(url) as model:  # the only model of the repository
        assert (model.name, model.version) == ("iris", 1)
        got = model.predict(x[::10])
    assert got["label"].tolist() == strong.predict(x[::10]).tolist()
    with pytest.raises(NotFoundError, match=r"no model repository or bundle at "
                                            r"'s3://models/nothing-here'"):
        ferry.load(f"s3://{BUCKET}/nothing-here")
