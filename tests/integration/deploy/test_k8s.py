"""``ferry deploy k8s`` (issue 20 item 2): manifests that validate and pass a policy check.

Every object is validated against the Kubernetes OpenAPI schemas (kubernetes-validate's
bundled, strict schemas: an unknown or misspelled field fails too); the KServe resources
are rebuilt field by field as the kserve SDK's models (its V1alpha1ClusterServingRuntime,
V1beta1InferenceService and the Kubernetes models they hold), which must give back exactly
the generated document. Each object that runs pods passes a policy check: non-root, a
read-only root filesystem, every capability dropped, no privilege escalation, resource
limits.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
import secrets
import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import httpx
import kubernetes.client
import kubernetes_validate
import pytest
import yaml

from ferry.settings import load_settings
from pki import issue
from secrets_used import remember
from serving import ferry_serve
from tree_builders import cli

KUBERNETES = "1.33"
KINDS = ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
         "Service"]


def deploy(capsys, deploy_repo, out: Path, *args: Any) -> tuple[int, str, str]:
    return cli(capsys, "--repo", deploy_repo.repo.root, "deploy", "k8s", *args, "-o", out)


def documents(out: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(out.glob("*.yaml")) + sorted(out.glob("kserve/*.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert path.name == f"{doc['kind'].lower()}.yaml"
        found[doc["kind"]] = doc
    return found


def pods(doc: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """``(pod-level securityContext, containers)`` of each pod an object runs."""
    spec = doc.get("spec", {})
    if doc["kind"] == "Deployment":
        pod = spec["template"]["spec"]
        return [(pod.get("securityContext", {}), pod["containers"])]
    if doc["kind"] == "ClusterServingRuntime":
        return [({}, spec["containers"])]
    if doc["kind"] == "InferenceService":
        predictor = spec["predictor"]
        return [(predictor.get("securityContext", {}), [predictor["model"]])]
    return []


def policy_violations(doc: dict[str, Any]) -> list[str]:
    """What breaks the policy, per container: empty when the object complies."""
    problems = []
    for pod_security, containers in pods(doc):
        for container in containers:
            security = {**pod_security, **container.get("securityContext", {})}
            where = f"{doc['kind']}/{container.get('name', 'model')}"
            if security.get("runAsNonRoot") is not True or security.get("runAsUser", 1) == 0:
                problems.append(f"{where}: may run as root")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: writable root filesystem")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities not all dropped")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: privilege escalation allowed")
            limits = container.get("resources", {}).get("limits", {})
            if not {"cpu", "memory"} <= set(limits):
                problems.append(f"{where}: no cpu and memory limits")
    return problems


@pytest.fixture
def written(capsys, deploy_repo, tmp_path) -> dict[str, dict[str, Any]]:
    code, _, stderr = deploy(capsys, deploy_repo, tmp_path / "k8s", "iris", "--image",
                             "registry.local/ferry-iris:1", "--replicas", "3", "--hpa-max",
                             "9", "--cpu", "500m", "--memory", "768Mi")
    assert code == 0, stderr
    return documents(tmp_path / "k8s")


def test_every_object_validates_against_the_kubernetes_schemas(written):
    assert sorted(k for k in written if k in KINDS) == KINDS
    for kind in KINDS:
        kubernetes_validate.validate(written[kind], KUBERNETES, strict=True)
    # The validator is strict: a misspelled field or a wrong type is refused.
    broken = copy.deepcopy(written["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
    broken = copy.deepcopy(written["Service"])
    broken["spec"]["ports"][0]["port"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_every_object_passes_the_policy_check(written):
    for kind, doc in written.items():
        assert policy_violations(doc) == [], kind
    assert {kind for kind, doc in written.items() if pods(doc)} == {
        "Deployment", "ClusterServingRuntime", "InferenceService"}
    # The check itself catches what it looks for.
    lax = copy.deepcopy(written["Deployment"])
    container = lax["spec"]["template"]["spec"]["containers"][0]
    del container["securityContext"]["capabilities"], container["resources"]["limits"]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    assert len(policy_violations(lax)) == 3


def test_the_deployment_probes_ports_resources_and_scaling(written):
    deployment = written["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.local/ferry-iris:1"
    assert container["args"] == ["--config", "/etc/ferry/ferry.toml"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8000, "grpc": 8001}
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "768Mi"},
                                      "limits": {"cpu": "500m", "memory": "768Mi"}}
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["automountServiceAccountToken"] is False
    assert deployment["spec"]["replicas"] == 3
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert pod and deployment["spec"]["template"]["metadata"]["labels"] == labels
    assert written["Service"]["spec"]["selector"] == labels
    assert written["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert {p["port"]: p["targetPort"] for p in written["Service"]["spec"]["ports"]} == {
        8000: "http", 8001: "grpc"}
    hpa = written["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_the_configmap_is_the_ferry_toml_ferry_serve_reads(written, tmp_path):
    config = tmp_path / "ferry.toml"
    config.write_text(written["ConfigMap"]["data"]["ferry.toml"])
    settings = load_settings(config)
    assert settings.models == ["iris:1"] and str(settings.repository) == "/models"
    assert (settings.host, settings.http_port, settings.grpc_port) == ("0.0.0.0", 8000, 8001)
    # The pod outlives the server's own stop: grace (readiness off) plus drain.
    grace = written["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert settings.shutdown_grace > 0
    assert grace > settings.shutdown_grace + settings.drain_timeout


def test_a_config_drain_sets_the_termination_grace(capsys, deploy_repo, tmp_path):
    (tmp_path / "ferry.toml").write_text("drain_timeout = 50.0\nshutdown_grace = 7.5\n"
                                         "workers = 2\n[model_defaults]\nmax_queue = 99\n")
    code, _, stderr = deploy(capsys, deploy_repo, tmp_path / "k8s", "iris", "--config",
                             tmp_path / "ferry.toml")
    assert code == 0, stderr
    docs = documents(tmp_path / "k8s")
    assert docs["Deployment"]["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"] > 57.5
    carried = tomllib.loads(docs["ConfigMap"]["data"]["ferry.toml"])
    assert carried["drain_timeout"] == 50.0 and carried["shutdown_grace"] == 7.5
    assert carried["workers"] == 2 and carried["model_defaults"]["max_queue"] == 99
    assert docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "ferry-iris:1"  # the tag `ferry build iris` gives by default


def test_security_files_become_secret_references_never_content(capsys, deploy_repo, tmp_path):
    keys = tmp_path / "keys.json"
    code, key, _ = cli(capsys, "keys", "add", "ci", "--grant", "infer:*", "--keys-file", keys)
    assert code == 0
    hs256 = secrets.token_urlsafe(40)
    (tmp_path / "hs256.key").write_text(hs256)
    server = issue("ferry", issue("ca", None, ca=True), server=True)
    cert, private = server.write(tmp_path, "server")
    remember(key, hs256, server.key)
    (tmp_path / "ferry.toml").write_text(
        f'[security]\napi_keys_file = "{keys}"\njwt_hs256_secret_file = "{tmp_path}/hs256.key"\n'
        f'tls_cert_file = "{cert}"\ntls_key_file = "{private}"\n'
        'audit_log = "/var/log/ferry-audit/audit.jsonl"\n')
    code, stdout, stderr = deploy(capsys, deploy_repo, tmp_path / "k8s", "iris", "--config",
                                  tmp_path / "ferry.toml", "--namespace", "models")
    assert code == 0, stderr
    docs = documents(tmp_path / "k8s")
    for kind in KINDS:
        kubernetes_validate.validate(docs[kind], KUBERNETES, strict=True)
        assert docs[kind]["metadata"]["namespace"] == "models"
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    secret_names = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secret_names == {"ferry-api-keys", "ferry-jwt-secret", "ferry-tls"}
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/etc/ferry/api-keys", "/etc/ferry/jwt-secret", "/etc/ferry/tls",
            "/var/log/ferry"} <= mounts
    carried = tomllib.loads(docs["ConfigMap"]["data"]["ferry.toml"])["security"]
    assert carried == {"api_keys_file": "/etc/ferry/api-keys/keys.json",
                       "jwt_hs256_secret_file": "/etc/ferry/jwt-secret/hs256.key",
                       "tls_cert_file": "/etc/ferry/tls/tls.crt",
                       "tls_key_file": "/etc/ferry/tls/tls.key",
                       "audit_log": "/var/log/ferry/audit.jsonl"}
    assert pod["containers"][0]["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert f"kubectl create secret tls ferry-tls -n models --cert={cert} --key={private}" in stdout
    assert (f"kubectl create secret generic ferry-api-keys -n models "
            f"--from-file=keys.json={keys}") in stdout
    everything = stdout + stderr + "".join(
        p.read_text() for p in (tmp_path / "k8s").rglob("*") if p.is_file())
    for secret in (key.strip(), hs256, server.key.decode().strip(), keys.read_text()):
        assert secret not in everything


def test_mtls_or_closed_health_probes_the_port(capsys, deploy_repo, tmp_path):
    (tmp_path / "ferry.toml").write_text("[security]\nopen_health = false\n")
    code, _, stderr = deploy(capsys, deploy_repo, tmp_path / "k8s", "iris", "--config",
                             tmp_path / "ferry.toml")
    assert code == 0, stderr
    container = documents(tmp_path / "k8s")["Deployment"]["spec"]["template"]["spec"][
        "containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["tcpSocket"] == {"port": "http"}


def _kserve_models() -> Any:
    """The kserve SDK's resource models, without running ``kserve/__init__.py``.

    That file imports kserve's own copy of the V2 gRPC protos, whose message names
    (``inference.ServerLiveRequest``...) collide in protobuf's default pool with ferry's,
    loaded by the other tests of the run. The models need only ``kserve.configuration``.
    """
    if "kserve" not in sys.modules:
        spec = importlib.util.find_spec("kserve")
        assert spec is not None and spec.submodule_search_locations, "kserve is not installed"
        package = types.ModuleType("kserve")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["kserve"] = package
    return importlib.import_module("kserve.models")


def _model(data: Any, klass: str) -> Any:
    """``data`` rebuilt as the kserve SDK's model ``klass``, refusing unknown fields."""
    if data is None:
        return None
    # The kserve SDK writes list[X] and dict(str, X); the kubernetes client List[X], Dict[str, X].
    if match := re.fullmatch(r"(?i)list\[(.*)\]", klass):
        assert isinstance(data, list), (klass, data)
        return [_model(item, match.group(1)) for item in data]
    if match := re.fullmatch(r"(?:dict\(|Dict\[)[^,]*, (.*)[)\]]", klass):
        assert isinstance(data, dict), (klass, data)
        return {key: _model(value, match.group(1)) for key, value in data.items()}
    primitive = {"str": str, "int": int, "float": (int, float), "bool": bool}
    if klass in primitive:
        assert isinstance(data, primitive[klass]), (klass, data)
        return data
    if klass == "object":
        return data
    cls = getattr(_kserve_models(), klass, None) or getattr(kubernetes.client, klass)
    fields = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    unknown = set(data) - set(fields)
    assert not unknown, f"{klass} has no field {sorted(unknown)}"
    return cls(**{fields[key]: _model(value, cls.openapi_types[fields[key]])
                  for key, value in data.items()})


def _document(model: Any) -> Any:
    """A model back to its JSON form, through each class's own attribute map."""
    if isinstance(model, list):
        return [_document(item) for item in model]
    if isinstance(model, dict):
        return {key: _document(value) for key, value in model.items()}
    if hasattr(model, "attribute_map"):
        return {json_key: _document(getattr(model, attr))
                for attr, json_key in model.attribute_map.items()
                if getattr(model, attr) is not None}
    return model


@pytest.mark.parametrize(("kind", "klass"), [
    ("ClusterServingRuntime", "V1alpha1ClusterServingRuntime"),
    ("InferenceService", "V1beta1InferenceService"),
], ids=["runtime", "inference-service"])
def test_kserve_resources_round_trip_through_the_sdk_models(written, kind, klass):
    doc = written[kind]
    model = _model(doc, klass)
    assert type(model).__name__ == klass
    assert _document(model) == doc
    with pytest.raises(AssertionError, match="has no field"):
        _model({**doc, "spec": {**doc["spec"], "predictorr": {}}}, klass)


def test_kserve_runtime_declares_ferry_for_its_formats_and_the_service_uses_it(written):
    runtime, service = written["ClusterServingRuntime"], written["InferenceService"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert {"onnx", "sklearn", "xgboost", "lightgbm", "pytorch", "tensorflow", "keras",
            "pmml", "ferry"} == formats
    assert not any(f["autoSelect"] for f in runtime["spec"]["supportedModelFormats"])
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in formats and model["modelFormat"]["name"] == "lightgbm"
    assert model["storageUri"] == "pvc://ferry-models/"
    assert {"name": "FERRY_MODELS", "value": "iris:1"} in model["env"]
    (container,) = runtime["spec"]["containers"]
    assert container["args"][0] == "/mnt/models"
    # The runtime's container is a valid Kubernetes container too.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ferry"},
           "spec": {"containers": [container], "volumes": runtime["spec"]["volumes"]}}
    kubernetes_validate.validate(pod, KUBERNETES, strict=True)


@pytest.mark.parametrize(("args", "phrase"), [
    (["--cpu", "lots"], "--cpu 'lots'"),
    (["--memory", "0"], "--memory '0'"),
    (["--replicas", "4", "--hpa-max", "3"], "--hpa-max 3 is below"),
    (["--name", "Ferry_1"], "--name 'Ferry_1'"),
], ids=["cpu", "memory", "hpa", "name"])
def test_bad_flags_are_one_line_naming_the_flag(capsys, deploy_repo, tmp_path, args, phrase):
    code, _, stderr = deploy(capsys, deploy_repo, tmp_path / "k8s", "iris", *args)
    assert code == 2 and phrase in stderr and "Traceback" not in stderr
    assert not (tmp_path / "k8s").exists()


def _infer_iris(url: str, deploy_repo) -> None:
    rows = deploy_repo.x[:5]
    answer = httpx.post(f"{url}/v2/models/iris/infer", timeout=30, json={"inputs": [{
        "name": "input", "datatype": "FP32", "shape": list(rows.shape),
        "data": rows.ravel().tolist()}]})
    assert answer.status_code == 200, answer.text
    label = next(o for o in answer.json()["outputs"] if o["name"] == "label")
    assert label["data"] == deploy_repo.labels[:5].tolist()


def test_the_pods_settings_serve_the_models(written, deploy_repo, tmp_path):
    """ferry serve with the ConfigMap's ferry.toml (the repository and ports given as flags,
    as the image's /models and a free port stand in for the pod's)."""
    config = tmp_path / "ferry.toml"
    config.write_text(written["ConfigMap"]["data"]["ferry.toml"])
    with ferry_serve(deploy_repo.repo.root, "--config", str(config), "--host", "127.0.0.1",
                     cwd=tmp_path) as server:
        _infer_iris(server.url, deploy_repo)
        assert httpx.get(f"{server.url}/v2/models/wine/ready", timeout=5).status_code == 404


def test_the_kserve_container_command_serves_the_service_models(written, deploy_repo):
    """The runtime's args after the image's `ferry serve`, with the InferenceService's env:
    /mnt/models is the repository, and the flags' ports stand in for 8080/8081."""
    (container,) = written["ClusterServingRuntime"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "/mnt/models"
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert flags == {"--host": "0.0.0.0", "--http-port": "8080", "--grpc-port": "8081",
                     "--log-format": "json"}
    env = {e["name"]: e["value"]
           for e in written["InferenceService"]["spec"]["predictor"]["model"]["env"]}
    # ferry_serve adds its own free ports and host flags after these; the later flag wins.
    with ferry_serve(deploy_repo.repo.root, "--host", "127.0.0.1", env=env,
                     log_format="json") as server:
        _infer_iris(server.url, deploy_repo)
        assert httpx.get(f"{server.url}/v2/models/wine/ready", timeout=5).status_code == 404
