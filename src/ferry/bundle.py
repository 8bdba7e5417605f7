"""Device bundles: one stored version copied out as a self-contained repository.

``ferry export digits:1 -o DIR`` writes ``DIR/digits/1/`` (the artifact, the manifest with
every file's sha256, and ``manifest.sig`` when the version is signed): a model repository
that holds one version, so ``ferry.load(DIR)`` on the device checks it exactly as the server
checks a repository. Nothing outside the version directory is needed, except for a
pipeline: its members' versions (those it runs now, resolved as the server resolves them)
are copied beside it, so that it runs the same steps on the device. ``DIR/bundle.json``
names the exported version, so ``ferry.load(DIR)`` needs no name.

With ``ort=True`` the ONNX artifact is converted to ONNX Runtime's ``.ort`` format (for its
minimal builds, which load nothing else) by ONNX Runtime's own tool,
``python -m onnxruntime.tools.convert_onnx_models_to_ort`` with the ``Fixed`` optimization
style, which also writes the reduced-operator config file a minimal build is compiled with
(``--include_ops_by_config``). The bundle's manifest then names ``model.ort`` and lists the
new files' hashes; it records where it came from in ``notes``, and the source version's
signature, which covered the old manifest, is not copied.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ferry.errors import ArtifactError, InputError, MissingDependencyError
from ferry.repository import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    ModelRef,
    Repository,
    StoredModel,
)
from ferry.repository.atomic import fsync_dir
from ferry.repository.hashing import hash_tree
from ferry.repository.manifest import FileEntry

__all__ = ["BUNDLE_FILE", "ORT_CONFIG_SUFFIX", "Bundle", "bundle_model", "export_bundle"]

#: At a bundle's root: ``{"model": "NAME:VERSION", "members": [...]}``.
BUNDLE_FILE = "bundle.json"
#: Nesting of member pipelines followed when copying them (the pipelines' own limit is lower).
_MAX_NESTING = 16

#: What ONNX Runtime's converter names the reduced-operator config beside ``<stem>.ort``.
ORT_CONFIG_SUFFIX = ".required_operators.config"


@dataclass(frozen=True)
class Bundle:
    """What :func:`export_bundle` wrote."""

    root: Path
    manifest: Manifest
    files: list[str]
    signed: bool
    #: ``NAME:VERSION`` of the versions a pipeline runs, copied beside it.
    members: list[str] = field(default_factory=list)

    @property
    def version_dir(self) -> Path:
        """``root/<name>/<version>``."""
        return self.root / self.manifest.name / str(self.manifest.version)


def export_bundle(repository: Repository, ref: ModelRef | str, out: Path, *,
                  ort: bool = False) -> Bundle:
    """Copy a verified version into ``out`` (a new or empty directory) as a bundle.

    Raises:
        NotFoundError, IntegrityError, UntrustedArtifactError: as :meth:`Repository.open`
            (a damaged version is never exported).
        InputError: ``out`` exists and is not an empty directory; ``ort`` for a version that
            is not an ONNX model.
        ArtifactError: ONNX Runtime's converter failed (the message quotes its last line).
        MissingDependencyError: ``ort`` without the onnx package (the ``cli`` extra).
    """
    stored = repository.open(ref)
    manifest = stored.manifest
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{str(out)!r} exists and is not an empty directory; "
                         "export into a new one")
    if ort and (manifest.runtime != "onnxruntime" or not manifest.artifact.endswith(".onnx")):
        raise InputError(
            f"--ort converts ONNX models; {manifest.name}:{manifest.version} runs on "
            f"{manifest.runtime!r} ({manifest.artifact})",
            hint="export it without --ort",
        )
    members = _members(repository, stored) if manifest.kind == "pipeline" else []
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{out.name}.export-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    version_dir = staging / manifest.name / str(manifest.version)
    try:
        for version in (stored, *members):
            _copy(version, staging / version.manifest.name / str(version.manifest.version))
        if ort:
            manifest = _to_ort(version_dir, manifest)
        signed = (version_dir / SIGNATURE_NAME).is_file()
        files = sorted(p.relative_to(version_dir).as_posix()
                       for p in version_dir.rglob("*") if p.is_file())
        refs = [f"{m.manifest.name}:{m.manifest.version}" for m in members]
        (staging / BUNDLE_FILE).write_text(json.dumps(
            {"model": f"{manifest.name}:{manifest.version}", "members": refs}, indent=2) + "\n")
        _seal(staging)
        if out.exists():
            out.rmdir()
        os.rename(staging, out)
        fsync_dir(out.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = Repository(out)
    for ref_text in (f"{manifest.name}:{manifest.version}", *refs):
        written.open(ref_text)  # checks what was written
    return Bundle(out, manifest, files, signed, refs)


def bundle_model(root: Path) -> str | None:
    """The ``NAME:VERSION`` a bundle's ``bundle.json`` names; None without one.

    Raises:
        InputError: the file is there but does not name a model.
    """
    try:
        data = json.loads((root / BUNDLE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"{str(root / BUNDLE_FILE)!r} is not readable JSON ({exc})") from None
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, str):
        raise InputError(f"{str(root / BUNDLE_FILE)!r} does not name a model "
                         '({"model": "NAME:VERSION"})')
    return model


def _copy(stored: StoredModel, target: Path) -> None:
    shutil.copytree(stored.path, target, copy_function=shutil.copyfile)
    for file in target.rglob("*"):  # copies of read-only files: writable until sealed
        file.chmod(0o755 if file.is_dir() else 0o644)


def _members(repository: Repository, stored: StoredModel) -> list[StoredModel]:
    """The verified member versions a pipeline runs now, member pipelines' members too."""
    from ferry.pipelines.spec import read_pipeline

    found: dict[tuple[str, int], StoredModel] = {}
    todo = [(stored, 0)]
    while todo:
        pipeline, depth = todo.pop()
        if depth > _MAX_NESTING:
            raise InputError(f"pipeline {pipeline.manifest.name}:{pipeline.manifest.version} "
                             f"nests pipelines deeper than {_MAX_NESTING}")
        for target in read_pipeline(pipeline.artifact_path).members():
            member = repository.open(target)
            key = (member.manifest.name, member.manifest.version)
            if key in found or key == (stored.manifest.name, stored.manifest.version):
                continue
            found[key] = member
            if member.manifest.kind == "pipeline":
                todo.append((member, depth + 1))
    return list(found.values())


def _to_ort(version_dir: Path, manifest: Manifest) -> Manifest:
    """Convert the ONNX artifact in ``version_dir`` in place; return the new manifest."""
    try:
        import onnx  # noqa: F401 - ONNX Runtime's converter needs it
    except ImportError:
        raise MissingDependencyError("ferry export --ort", "cli") from None
    source = version_dir / manifest.artifact
    target = source.with_suffix(".ort")
    with tempfile.TemporaryDirectory(prefix="ferry-ort-") as tmp:
        out = Path(tmp)
        result = subprocess.run(
            [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort",
             str(source), "--output_dir", str(out), "--optimization_style", "Fixed"],
            capture_output=True, text=True, timeout=600, check=False,
        )
        converted = out / target.name
        config = out / f"{source.stem}{ORT_CONFIG_SUFFIX}"
        if result.returncode != 0 or not converted.is_file() or not config.is_file():
            last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
            raise ArtifactError(
                f"ONNX Runtime could not convert {manifest.name}:{manifest.version} "
                f"to the ORT format: {last[-1][:300]}"
            )
        shutil.copyfile(converted, target)
        # The converter heads the file with the absolute paths it read: keep the bundle's own.
        lines = [line for line in config.read_text().splitlines() if not line.startswith("#")]
        (target.parent / config.name).write_text(
            f"# Operators {target.name} uses: build ONNX Runtime with "
            f"--include_ops_by_config {config.name}\n" + "\n".join(lines) + "\n")
    source.unlink()
    (version_dir / SIGNATURE_NAME).unlink(missing_ok=True)
    hashed = hash_tree(version_dir, exclude=frozenset({MANIFEST_NAME}))
    if any(digest == "symlink" for digest, _ in hashed.values()):
        raise ArtifactError(f"model {manifest.name}:{manifest.version} holds a symbolic link")
    manifest = manifest.model_copy(update={
        "artifact": Path(manifest.artifact).with_suffix(".ort").as_posix(),
        "files": {rel: FileEntry(sha256=h, size=n) for rel, (h, n) in hashed.items()},
        "notes": [*manifest.notes,
                  f"converted to ONNX Runtime's ORT format from {manifest.artifact} "
                  f"(sha256 {manifest.files[manifest.artifact].sha256}) by ferry export --ort"],
    })
    (version_dir / MANIFEST_NAME).write_bytes(manifest.to_json())
    return manifest


def _seal(path: Path) -> None:
    """Read-only files (every file below ``path``), flushed to disk, as in the repository."""
    for file in path.rglob("*"):
        if file.is_file():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
            file.chmod(0o444)
    fsync_dir(path)
