"""KServe resources: ferry as a ``ClusterServingRuntime``, and an ``InferenceService`` on it.

KServe's storage initializer copies ``storageUri`` (the model repository: a PVC path,
``s3://...``, ``gs://...``) to ``/mnt/models``; the runtime's container is the ``ferry
build`` image, told to serve that directory on KServe's port 8080 with the V2 protocol.
The runtime declares the KServe format names of what ferry imports, ``autoSelect: false``
(a raw model file is not a ferry repository: an InferenceService names the runtime), plus
``ferry`` for a repository of mixed formats.
"""

from __future__ import annotations

from typing import Any

from ferry.deploy.k8s import ClusterOptions, container_security, pod_security, resources
from ferry.deploy.selection import Selection

__all__ = ["KSERVE_FORMATS", "MODELS_DIR", "cluster_serving_runtime", "inference_service",
           "kserve_format"]

#: ferry's import formats -> KServe model format names (KServe says "pytorch").
KSERVE_FORMATS: dict[str, str] = {
    "onnx": "onnx",
    "keras": "keras",
    "savedmodel": "tensorflow",
    "torch": "pytorch",
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "pmml": "pmml",
}
#: The format name of a ferry model repository whose models differ in format.
REPOSITORY_FORMAT = "ferry"
#: Where KServe's storage initializer puts ``storageUri``.
MODELS_DIR = "/mnt/models"
_PORT = 8080
_GRPC_PORT = 8081
_API = "serving.kserve.io"


def kserve_format(source_format: str) -> str:
    """The KServe model format name of a ferry import format (``torch`` -> ``pytorch``)."""
    return KSERVE_FORMATS.get(source_format, source_format)


def cluster_serving_runtime(options: ClusterOptions) -> dict[str, Any]:
    """A ``ClusterServingRuntime`` named ``options.name`` that runs ``options.image``.

    Raises:
        InputError: an option is invalid.
    """
    options.check()
    formats = sorted({*KSERVE_FORMATS.values(), REPOSITORY_FORMAT})
    return {
        "apiVersion": f"{_API}/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": options.name, "labels": {"app.kubernetes.io/name": "ferry"}},
        "spec": {
            "supportedModelFormats": [
                {"name": name, "version": "1", "autoSelect": False} for name in formats],
            "protocolVersions": ["v2"],
            "multiModel": False,
            "containers": [{
                "name": "kserve-container",
                "image": options.image,
                # The image's entry point is `ferry serve`.
                "args": [MODELS_DIR, "--host", "0.0.0.0", "--http-port", str(_PORT),
                         "--grpc-port", str(_GRPC_PORT), "--log-format", "json"],
                "ports": [{"containerPort": _PORT, "protocol": "TCP"}],
                "resources": resources(options),
                "securityContext": container_security(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
        },
    }


def inference_service(selection: Selection, options: ClusterOptions,
                      storage_uri: str) -> dict[str, Any]:
    """An ``InferenceService`` serving ``selection`` from ``storage_uri`` on ferry's runtime.

    Raises:
        InputError: an option is invalid.
    """
    options.check()
    formats = {kserve_format(m.format) for m in selection.manifests}
    model_format = formats.pop() if len(formats) == 1 else REPOSITORY_FORMAT
    metadata: dict[str, Any] = {"name": options.name,
                                "labels": {"app.kubernetes.io/name": "ferry"}}
    if options.namespace:
        metadata["namespace"] = options.namespace
    return {
        "apiVersion": f"{_API}/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": {
            "minReplicas": options.min_replicas,
            "maxReplicas": options.hpa_max,
            "securityContext": pod_security(),
            "model": {
                "name": "kserve-container",  # the name KServe gives it anyway
                "modelFormat": {"name": model_format},
                "runtime": options.name,
                "protocolVersion": "v2",
                "storageUri": storage_uri,
                # The repository may hold more: serve exactly these versions.
                "env": [{"name": "FERRY_MODELS", "value": ",".join(selection.refs)}],
                "resources": resources(options),
                "securityContext": container_security(),
            },
        }},
    }
