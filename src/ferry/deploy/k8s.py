"""``ferry deploy k8s``: Kubernetes manifests that run a ``ferry build`` image.

:func:`kubernetes_objects` returns, as plain dicts (``kubectl apply`` takes them as YAML):

- a ConfigMap with the ``ferry.toml`` the pods read (the pinned models, every address,
  ports 8000/8001, ``[security]`` paths pointing at the mounted Secrets);
- a Deployment: resource requests and limits, startup/liveness probes on
  ``/v2/health/live`` and a readiness probe on ``/v2/health/ready``, a non-root user, a
  read-only root filesystem (an ``emptyDir`` on ``/tmp``), every capability dropped, and a
  termination grace period longer than the server's ``shutdown_grace + drain_timeout``;
- a Service (HTTP 8000, gRPC 8001), a HorizontalPodAutoscaler (``autoscaling/v2``, CPU)
  and a PodDisruptionBudget.

Keys, JWT keys and TLS material never enter a manifest: each ``[security]`` file setting
becomes a Secret *reference* (:class:`SecretMount`), and :func:`secret_commands` prints the
``kubectl create secret`` line that makes it from the local file.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.deploy.config import CONFIG_PATH, render_toml
from ferry.deploy.container import GRPC_PORT, HTTP_PORT, MODELS_PATH, UID
from ferry.deploy.selection import Selection
from ferry.errors import InputError
from ferry.settings import ServerSettings

__all__ = [
    "GRACE_MARGIN_S",
    "ClusterOptions",
    "SecretMount",
    "container_security",
    "kubernetes_objects",
    "pod_security",
    "resources",
    "secret_commands",
    "secret_mounts",
    "server_config",
    "termination_grace",
]

#: Seconds the pod is given beyond ferry's own shutdown_grace + drain_timeout.
GRACE_MARGIN_S = 10
#: Default shutdown_grace on a cluster: time for endpoints to drop a stopping pod.
CLUSTER_SHUTDOWN_GRACE = 5.0

_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$")
_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$")
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_AUDIT_DIR = "/var/log/ferry"


@dataclass(frozen=True)
class ClusterOptions:
    """How the cluster runs the image (the flags of ``ferry deploy k8s``)."""

    image: str
    name: str = "ferry"
    namespace: str | None = None
    replicas: int = 2
    hpa_min: int | None = None
    hpa_max: int = 6
    cpu: str = "1"
    memory: str = "1Gi"
    cpu_target: int = 70
    models_pvc: str | None = None

    @property
    def min_replicas(self) -> int:
        """The autoscaler's floor: ``hpa_min``, else ``replicas``."""
        return self.hpa_min if self.hpa_min is not None else self.replicas

    def check(self) -> None:
        """Refuse values the API server would refuse, naming the flag.

        Raises:
            InputError: a name, count or quantity is invalid.
        """
        for flag, value in (("--name", self.name), ("--namespace", self.namespace)):
            if value is not None and not _NAME.fullmatch(value):
                raise InputError(f"{flag} {value!r}: use 1-52 lowercase letters, digits or "
                                 "'-', starting with a letter (a Kubernetes name)")
        if not self.image.strip() or any(c.isspace() for c in self.image):
            raise InputError(f"--image {self.image!r}: name an image, e.g. ferry-digits:3")
        if self.replicas < 1 or self.min_replicas < 1:
            raise InputError("--replicas and --hpa-min must be at least 1")
        if self.hpa_max < self.min_replicas:
            raise InputError(f"--hpa-max {self.hpa_max} is below the autoscaler's minimum "
                             f"{self.min_replicas} (--hpa-min, else --replicas)")
        if not _CPU.fullmatch(self.cpu) or _cpu_millis(self.cpu) == 0:
            raise InputError(f"--cpu {self.cpu!r}: a CPU quantity such as 1, 0.5 or 500m")
        if not _MEMORY.fullmatch(self.memory) or float(
                re.sub(r"[A-Za-z]+$", "", self.memory)) == 0:
            raise InputError(f"--memory {self.memory!r}: a memory quantity such as 512Mi "
                             "or 2Gi")
        if not 1 <= self.cpu_target <= 100:
            raise InputError(f"--cpu-target {self.cpu_target}: a percentage, 1-100")


@dataclass(frozen=True)
class SecretMount:
    """One ``[security]`` file setting served from a Kubernetes Secret."""

    setting: str
    secret: str
    key: str
    mount_dir: str
    source: Path

    @property
    def path(self) -> str:
        """Where the pod reads the file (the setting's value in the ConfigMap)."""
        return f"{self.mount_dir}/{self.key}"


# setting -> (secret suffix, key in the Secret, mount directory)
_SECRET_FILES: dict[str, tuple[str, str, str]] = {
    "api_keys_file": ("api-keys", "keys.json", "/etc/ferry/api-keys"),
    "jwt_hs256_secret_file": ("jwt-secret", "hs256.key", "/etc/ferry/jwt-secret"),
    "jwt_jwks_file": ("jwks", "jwks.json", "/etc/ferry/jwks"),
    "trusted_keys_file": ("trusted-keys", "trusted-keys", "/etc/ferry/trusted-keys"),
    "tls_cert_file": ("tls", "tls.crt", "/etc/ferry/tls"),
    "tls_key_file": ("tls", "tls.key", "/etc/ferry/tls"),
    "tls_client_ca_file": ("client-ca", "ca.crt", "/etc/ferry/client-ca"),
}


def secret_mounts(settings: ServerSettings, name: str) -> list[SecretMount]:
    """The Secrets the pods mount, one per ``[security]`` file that is set."""
    security = settings.security
    mounts = []
    for setting, (suffix, key, mount_dir) in _SECRET_FILES.items():
        local = getattr(security, setting)
        if local is not None:
            mounts.append(SecretMount(setting, f"{name}-{suffix}", key, mount_dir, local))
    return mounts


def secret_commands(mounts: list[SecretMount], namespace: str | None = None) -> list[str]:
    """The ``kubectl create secret`` lines that make ``mounts``' Secrets from local files."""
    ns = f" -n {shlex.quote(namespace)}" if namespace else ""
    by_secret: dict[str, list[SecretMount]] = {}
    for mount in mounts:
        by_secret.setdefault(mount.secret, []).append(mount)
    lines = []
    for secret, items in by_secret.items():
        keys = {item.key: item.source for item in items}
        if set(keys) == {"tls.crt", "tls.key"}:
            lines.append(f"kubectl create secret tls {secret}{ns} "
                         f"--cert={shlex.quote(str(keys['tls.crt']))} "
                         f"--key={shlex.quote(str(keys['tls.key']))}")
        else:
            files = " ".join(f"--from-file={key}={shlex.quote(str(path))}"
                             for key, path in keys.items())
            lines.append(f"kubectl create secret generic {secret}{ns} {files}")
    return lines


def termination_grace(shutdown_grace: float, drain_timeout: float) -> int:
    """Seconds Kubernetes waits after SIGTERM: the server's grace and drain, plus a margin."""
    return math.ceil(shutdown_grace + drain_timeout) + GRACE_MARGIN_S


def server_config(settings: ServerSettings, selection: Selection, *, repository: str,
                  http_port: int, grpc_port: int, mounts: list[SecretMount]) -> dict[str, Any]:
    """The settings the pods run with, as the nested dict ``ferry.toml`` is written from.

    What the user's settings set is kept; the repository, the models, the address and the
    ports are the image's; ``[security]`` files point at the Secrets' mounts; an audit log
    file goes to an ``emptyDir``; ``shutdown_grace`` defaults to a few seconds so that
    Services stop sending to a stopping pod before its ports close.
    """
    data: dict[str, Any] = settings.model_dump(mode="json", exclude_unset=True)
    data.update(repository=repository, models=selection.refs, host="0.0.0.0",
                http_port=http_port, grpc_port=grpc_port)
    if "shutdown_grace" not in settings.model_fields_set:
        data["shutdown_grace"] = CLUSTER_SHUTDOWN_GRACE
    security = dict(data.get("security", {}))
    for mount in mounts:
        security[mount.setting] = mount.path
    audit = settings.security.audit_log
    if audit is not None and audit != "-":
        security["audit_log"] = f"{_AUDIT_DIR}/{Path(audit).name}"
    if security:
        data["security"] = security
    return data


def pod_security() -> dict[str, Any]:
    """The pod's securityContext: the image's non-root user, the runtime's seccomp profile."""
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> dict[str, Any]:
    """The container's securityContext: read-only root, no privilege, every capability off."""
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
            "allowPrivilegeEscalation": False, "privileged": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def resources(options: ClusterOptions) -> dict[str, Any]:
    """Requests equal to limits: the pod's QoS class is Guaranteed."""
    amount = {"cpu": options.cpu, "memory": options.memory}
    return {"requests": dict(amount), "limits": dict(amount)}


def kubernetes_objects(selection: Selection, settings: ServerSettings,
                       options: ClusterOptions) -> list[dict[str, Any]]:
    """ConfigMap, Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget.

    Raises:
        InputError: an option is invalid (:meth:`ClusterOptions.check`).
    """
    options.check()
    mounts = secret_mounts(settings, options.name)
    values = server_config(settings, selection, repository=MODELS_PATH, http_port=HTTP_PORT,
                           grpc_port=GRPC_PORT, mounts=mounts)
    config = render_toml(values, header=f"Made by `ferry deploy k8s` for "
                         f"{', '.join(selection.refs)}.")
    grace = termination_grace(values.get("shutdown_grace", settings.shutdown_grace),
                              settings.drain_timeout)
    objects = [
        _object("v1", "ConfigMap", f"{options.name}-config", options,
                data={"ferry.toml": config}),
        _deployment(settings, options, mounts, config, grace),
        _service(options),
        _autoscaler(options),
        _object("policy/v1", "PodDisruptionBudget", options.name, options,
                spec={"maxUnavailable": 1, "selector": {"matchLabels": _selector(options)}}),
    ]
    return objects


def _selector(options: ClusterOptions) -> dict[str, str]:
    return {"app.kubernetes.io/name": "ferry", "app.kubernetes.io/instance": options.name}


def _object(api_version: str, kind: str, name: str, options: ClusterOptions,
            **body: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {
        **_selector(options), "app.kubernetes.io/managed-by": "ferry"}}
    if options.namespace:
        metadata["namespace"] = options.namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def _probes(settings: ServerSettings) -> dict[str, Any]:
    """Probes on the V2 health routes, or on the port where kubelet cannot call them."""
    security = settings.security
    if not security.open_health or security.tls_client_ca_file is not None:
        # kubelet presents no credentials and no client certificate: an open port is all
        # it can check (open_health = false, or mTLS).
        live: dict[str, Any] = {"tcpSocket": {"port": "http"}}
        ready = live
    else:
        scheme = "HTTPS" if security.tls_cert_file is not None else "HTTP"
        live = {"httpGet": {"path": "/v2/health/live", "port": "http", "scheme": scheme}}
        ready = {"httpGet": {"path": "/v2/health/ready", "port": "http", "scheme": scheme}}
    return {
        # Models load, hash-check and warm up before the ports open: up to 5 minutes.
        "startupProbe": {**live, "periodSeconds": 2, "timeoutSeconds": 2,
                         "failureThreshold": 150},
        "livenessProbe": {**live, "periodSeconds": 10, "timeoutSeconds": 3,
                          "failureThreshold": 3},
        "readinessProbe": {**ready, "periodSeconds": 2, "timeoutSeconds": 2,
                           "failureThreshold": 1, "successThreshold": 1},
    }


def _volumes(settings: ServerSettings, options: ClusterOptions, mounts: list[SecretMount]
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{options.name}-config"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    mounted: list[dict[str, Any]] = [
        {"name": "config", "mountPath": str(Path(CONFIG_PATH).parent), "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if options.models_pvc:
        volumes.append({"name": "models", "persistentVolumeClaim": {
            "claimName": options.models_pvc, "readOnly": True}})
        mounted.append({"name": "models", "mountPath": MODELS_PATH, "readOnly": True})
    audit = settings.security.audit_log
    if audit is not None and audit != "-":
        volumes.append({"name": "audit", "emptyDir": {"sizeLimit": "1Gi"}})
        mounted.append({"name": "audit", "mountPath": _AUDIT_DIR})
    for secret in sorted({m.secret for m in mounts}):
        directory = next(m.mount_dir for m in mounts if m.secret == secret)
        volume = secret.removeprefix(f"{options.name}-")
        # A whole directory, not a subPath: Kubernetes updates it in place when the
        # Secret changes, and ferry re-reads keys files (and TLS on SIGHUP).
        volumes.append({"name": volume, "secret": {"secretName": secret,
                                                   "defaultMode": 0o440}})
        mounted.append({"name": volume, "mountPath": directory, "readOnly": True})
    return volumes, mounted


def _deployment(settings: ServerSettings, options: ClusterOptions,
                mounts: list[SecretMount], config: str, grace: int) -> dict[str, Any]:
    volumes, mounted = _volumes(settings, options, mounts)
    container = {
        "name": "ferry",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--config", CONFIG_PATH],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                  {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"}],
        "resources": resources(options),
        **_probes(settings),
        "securityContext": container_security(),
        "volumeMounts": mounted,
    }
    digest = hashlib.sha256(config.encode()).hexdigest()[:16]
    template = {
        # A changed ferry.toml rolls the pods (a ConfigMap change alone would not).
        "metadata": {"labels": _selector(options),
                     "annotations": {"ferry.dev/config-sha256": digest}},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": pod_security(),
            "terminationGracePeriodSeconds": grace,
            "containers": [container],
            "volumes": volumes,
            "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": _selector(options)}}],
        },
    }
    return _object("apps/v1", "Deployment", options.name, options, spec={
        "replicas": options.replicas,
        "selector": {"matchLabels": _selector(options)},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": template,
    })


def _service(options: ClusterOptions) -> dict[str, Any]:
    return _object("v1", "Service", options.name, options, spec={
        "type": "ClusterIP",
        "selector": _selector(options),
        "ports": [
            {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP",
             "appProtocol": "http"},
            {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP",
             "appProtocol": "kubernetes.io/h2c"},
        ],
    })


def _autoscaler(options: ClusterOptions) -> dict[str, Any]:
    return _object("autoscaling/v2", "HorizontalPodAutoscaler", options.name, options, spec={
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                           "name": options.name},
        "minReplicas": options.min_replicas,
        "maxReplicas": options.hpa_max,
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization",
                                      "averageUtilization": options.cpu_target}}}],
    })


def _cpu_millis(cpu: str) -> float:
    return float(cpu[:-1]) if cpu.endswith("m") else float(cpu) * 1000

