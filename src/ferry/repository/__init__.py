"""The model repository: versioned, immutable, hash-checked model artifacts on disk."""

from ferry.repository.layout import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    ModelRef,
    check_model_name,
    parse_version,
)
from ferry.repository.manifest import (
    FileEntry,
    Manifest,
    Optimization,
    OptimizationStep,
    ParityReport,
    SourceInfo,
    now_utc,
    read_manifest,
)
from ferry.repository.signing import ManifestSignature, SigningKey, TrustedKey, TrustedKeys
from ferry.repository.store import Repository, StoredModel
from ferry.repository.versions import VersionPolicy

__all__ = [
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "FileEntry",
    "Manifest",
    "ManifestSignature",
    "ModelRef",
    "Optimization",
    "OptimizationStep",
    "ParityReport",
    "Repository",
    "SigningKey",
    "SourceInfo",
    "StoredModel",
    "TrustedKey",
    "TrustedKeys",
    "VersionPolicy",
    "check_model_name",
    "now_utc",
    "parse_version",
    "read_manifest",
]
