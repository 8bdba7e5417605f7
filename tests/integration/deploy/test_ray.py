"""Ray Serve (issue 20 item 3): ferry's engine deployed on a real local Ray cluster.

The module starts one local Ray instance (``ray.init(address="local")``, no dashboard, 2
CPUs; Ray's own GCS and raylet ports are Ray's choice) and Serve's HTTP proxy on 127.0.0.1
on a free port, deploys the repository of ``deploy_repo`` (iris: LightGBM -> ONNX; wine:
native XGBoost, both trained here on scikit-learn's bundled data) with ``ferry.ray.deploy``
(two replicas), and checks:

* every request through Ray's proxy gets the answer the single-process server
  (tests/rest_server.py) gives: status and body, answers, metadata and errors alike;
* a replica killed (``ray.kill`` on its actor handle) during a bounded load is replaced by
  Ray, and the answers keep coming;
* ``ferry serve REPO --ray --address ...`` (a subprocess joining the same cluster)
  redeploys with the models it is told to serve, and returns;
* ``ferry serve REPO --ray`` alone starts its own local Ray instance, answers, and stops
  with it on Ctrl-C (exit 0, the port closed).

One Ray instance takes ~5 s to start and a deployment ~5 s more on a 2-core machine: the
whole module stays well under the 240 s it is allowed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from extras import require
from ferry.engine import Engine
from rest_server import serve as rest_serve
from serving import free_port

ray = require("ray")

pytestmark = [
    pytest.mark.timeout(240),
    # Ray's own modules use pydantic v1-style Field arguments and other deprecated APIs.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
]

ROOT = Path(__file__).resolve().parents[3]


def _wait(condition, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with Serve's proxy on a free 127.0.0.1 port."""
    from ray import serve

    port = free_port()
    ray.init(address="local", include_dashboard=False, num_cpus=2, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def deployed(cluster, deploy_repo):
    import ferry.ray

    deployment = ferry.ray.deploy(deploy_repo.repo.root, host="127.0.0.1", port=cluster,
                                  num_replicas=2)
    assert deployment.url == f"http://127.0.0.1:{cluster}"
    assert sorted(deployment.models) == ["iris", "wine"]
    return deployment


@pytest.fixture(scope="module")
def single(deploy_repo):
    """The single-process server over the same repository: the reference answers."""
    with rest_serve(Engine(deploy_repo.repo), deploy_repo.repo) as served:
        yield served


def _v2(deploy_repo, name: str, rows: np.ndarray) -> dict:
    """A V2 JSON request for the model's first input."""
    input_name = deploy_repo.repo.open(name).manifest.signature.inputs[0].name
    return {"inputs": [{"name": input_name, "datatype": "FP32",
                        "shape": list(rows.shape), "data": rows.ravel().tolist()}]}


def _requests(deploy_repo) -> list[tuple[str, str, object]]:
    iris = deploy_repo.x[:7]
    bad_shape = _v2(deploy_repo, "iris", iris[:1, :3])
    wine = np.random.default_rng(0).uniform(0.1, 15.0, (3, 13)).astype(np.float32)
    return [
        ("POST", "/v2/models/iris/infer", _v2(deploy_repo, "iris", iris)),
        ("POST", "/v2/models/iris/versions/1/infer", _v2(deploy_repo, "iris", iris[:1])),
        ("POST", "/v2/models/wine/infer", _v2(deploy_repo, "wine", wine)),
        ("POST", "/predict/iris", {"data": iris[:3].tolist()}),
        ("GET", "/v2/models/iris", None),
        ("GET", "/v2/models/wine/ready", None),
        ("GET", "/v2/health/ready", None),
        # errors: the same status and message through Ray's proxy
        ("POST", "/v2/models/iris/infer", bad_shape),
        ("POST", "/v2/models/iris/infer", b"{not json"),
        ("POST", "/v2/models/nosuch/infer", _v2(deploy_repo, "iris", iris[:1])),
        ("GET", "/v2/models/iris/versions/9", None),
    ]


def _send(client: httpx.Client, url: str, method: str, path: str, body: object):
    if isinstance(body, bytes):
        answer = client.request(method, url + path, content=body,
                                headers={"Content-Type": "application/json"})
    else:
        answer = client.request(method, url + path, json=body)
    return answer.status_code, answer.json()


def test_answers_through_rays_proxy_equal_the_single_process_server(deployed, single,
                                                                   deploy_repo):
    with httpx.Client(timeout=30) as client:
        for method, path, body in _requests(deploy_repo):
            on_ray = _send(client, deployed.url, method, path, body)
            alone = _send(client, single.url, method, path, body)
            assert on_ray == alone, f"{method} {path}"
        # the answers are LightGBM's own classes, not just equal to each other
        status, body = _send(client, deployed.url, "POST", "/v2/models/iris/infer",
                             _v2(deploy_repo, "iris", deploy_repo.x))
    assert status == 200
    assert _labels(body) == deploy_repo.labels.tolist()


def _labels(body: dict) -> list[int]:
    """The predicted classes of a V2 answer (its integer output)."""
    return next(o["data"] for o in body["outputs"] if o["datatype"].startswith("INT"))


def _replicas() -> list[str]:
    return sorted(actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
                  if actor["name"].startswith("SERVE_REPLICA::ferry#"))


def _running_replicas() -> int:
    from ray import serve

    app = serve.status().applications.get("ferry")
    if app is None:
        return 0
    return app.deployments["ferry"].replica_states.get("RUNNING", 0)


def test_a_killed_replica_is_replaced_while_answers_keep_coming(deployed, deploy_repo):
    before = _replicas()
    assert len(before) == 2
    body = _v2(deploy_repo, "iris", deploy_repo.x[:4])
    expected = deploy_repo.labels[:4].tolist()
    results: list[tuple[float, int, bool]] = []  # (time, status, right answer)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    answer = client.post(deployed.url + "/v2/models/iris/infer", json=body)
                except httpx.TransportError:
                    results.append((time.monotonic(), 0, False))
                    continue
                right = answer.status_code == 200 and _labels(answer.json()) == expected
                results.append((time.monotonic(), answer.status_code, right))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
        # Ray's controller notices the dead actor and starts a new replica in its place
        replaced = _wait(lambda: (names := _replicas()) and before[0] not in names
                         and len(names) == 2 and _running_replicas() == 2 and names,
                         90, "a new replica in place of the killed one")
        replaced_at = time.monotonic()
        time.sleep(1.0)  # the new replica takes requests too
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert before[1] in replaced and before[0] not in replaced
    after_kill = [r for r in results if r[0] > killed_at]
    after_replaced = [r for r in results if r[0] > replaced_at]
    failed = [r for r in results if not r[2]]
    assert len(after_kill) >= 20, f"only {len(after_kill)} answers after the kill"
    assert after_replaced and all(r[2] for r in after_replaced), \
        f"failures after the replacement: {[r for r in after_replaced if not r[2]][:5]}"
    # at most the requests in flight on the killed replica fail (3 clients)
    assert len(failed) <= 3, f"{len(failed)} failed of {len(results)}: {failed[:5]}"


def test_ferry_serve_ray_deploys_to_the_cluster_and_returns(cluster, deployed, deploy_repo):
    address = ray.get_runtime_context().gcs_address
    process = subprocess.run(
        [sys.executable, "-m", "ferry", "serve", str(deploy_repo.repo.root), "--ray",
         "--address", address, "--models", "iris", "--ray-replicas", "1",
         "--host", "127.0.0.1", "--http-port", str(cluster)],
        capture_output=True, text=True, timeout=150, cwd=ROOT, env=dict(os.environ),
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert "Ray Serve is serving iris" in process.stdout
    assert f"http://127.0.0.1:{cluster}" in process.stdout
    with httpx.Client(timeout=30) as client:
        status, body = _send(client, deployed.url, "POST", "/v2/models/iris/infer",
                             _v2(deploy_repo, "iris", deploy_repo.x[:5]))
        assert status == 200 and _labels(body) == deploy_repo.labels[:5].tolist()
        wine = client.get(deployed.url + "/v2/models/wine")
    assert wine.status_code == 404 and "wine" in wine.json()["error"]
    assert _wait(lambda: len(_replicas()) == 1, 60, "one replica after --ray-replicas 1")


@pytest.mark.parametrize(("args", "phrase"), [
    (["--address", "auto"], "--address and --ray-replicas apply to Ray Serve only"),
    (["--ray", "--workers", "2"], "--workers does not apply with --ray"),
    (["--ray", "--models", "nosuch"], "model 'nosuch' is not in repository"),
])
def test_bad_ray_flags_are_one_line_and_start_nothing(deploy_repo, args, phrase):
    process = subprocess.run(
        [sys.executable, "-m", "ferry", "serve", str(deploy_repo.repo.root), *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert process.returncode != 0
    assert phrase in process.stderr
    assert "Traceback" not in process.stderr
    assert "Ray Serve is serving" not in process.stdout


def test_ferry_serve_ray_without_address_serves_until_ctrl_c(deploy_repo, tmp_path):
    """The README's `ferry serve REPO --ray`: its own local Ray instance, stopped by SIGINT."""
    port = free_port()
    log = tmp_path / "serve-ray.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ferry", "serve", str(deploy_repo.repo.root), "--ray",
             "--models", "iris", "--ray-replicas", "1", "--http-port", str(port)],
            stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            start_new_session=True)
    try:
        _wait(lambda: "Ctrl-C stops it" in log.read_text() or process.poll() is not None,
              150, "ferry serve --ray to say it is serving")
        assert process.poll() is None, log.read_text()
        assert f"http://127.0.0.1:{port}" in log.read_text()
        with httpx.Client(timeout=30) as client:
            status, body = _send(client, f"http://127.0.0.1:{port}", "POST",
                                 "/v2/models/iris/infer", _v2(deploy_repo, "iris",
                                                              deploy_repo.x[:6]))
        assert status == 200 and _labels(body) == deploy_repo.labels[:6].tolist()
        process.send_signal(signal.SIGINT)
        assert process.wait(90) == 0, log.read_text()
    finally:
        if process.poll() is None:  # its session: the CLI and the Ray processes it started
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    with pytest.raises(httpx.TransportError):  # the proxy went with its Ray instance
        httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=5)
