"""Device bundles: one stored version copied out as a self-contained repository.

``ferry export digits:1 -o DIR`` writes ``DIR/digits/1/`` (the artifact, the manifest with
every file's sha256, and ``manifest.sig`` when the version is signed): a model repository
that holds one version, so ``ferry.load(DIR)`` on the device checks it exactly as the server
checks a repository. Nothing outside the version directory is needed.

With ``ort=True`` the ONNX artifact is converted to ONNX Runtime's ``.ort`` format (for its
minimal builds, which load nothing else) by ONNX Runtime's own tool,
``python -m onnxruntime.tools.convert_onnx_models_to_ort`` with the ``Fixed`` optimization
style, which also writes the reduced-operator config file a minimal build is compiled with
(``--include_ops_by_config``). The bundle's manifest then names ``model.ort`` and lists the
new files' hashes; it records where it came from in ``notes``, and the source version's
signature, which covered the old manifest, is not copied.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from ferry.errors import ArtifactError, InputError, MissingDependencyError
from ferry.repository import MANIFEST_NAME, SIGNATURE_NAME, Manifest, ModelRef, Repository
from ferry.repository.atomic import fsync_dir
from ferry.repository.hashing import hash_tree
from ferry.repository.manifest import FileEntry

__all__ = ["ORT_CONFIG_SUFFIX", "Bundle", "export_bundle"]

#: What ONNX Runtime's converter names the reduced-operator config beside ``<stem>.ort``.
ORT_CONFIG_SUFFIX = ".required_operators.config"


@dataclass(frozen=True)
class Bundle:
    """What :func:`export_bundle` wrote."""

    root: Path
    manifest: Manifest
    files: list[str]
    signed: bool

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
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{out.name}.export-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    version_dir = staging / manifest.name / str(manifest.version)
    try:
        shutil.copytree(stored.path, version_dir, copy_function=shutil.copyfile)
        for file in version_dir.rglob("*"):  # copies of read-only files: writable until sealed
            file.chmod(0o755 if file.is_dir() else 0o644)
        if ort:
            manifest = _to_ort(version_dir, manifest)
        signed = (version_dir / SIGNATURE_NAME).is_file()
        files = sorted(p.relative_to(version_dir).as_posix()
                       for p in version_dir.rglob("*") if p.is_file())
        _seal(version_dir)
        if out.exists():
            out.rmdir()
        os.rename(staging, out)
        fsync_dir(out.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    bundle = Bundle(out, manifest, files, signed)
    Repository(out).open(f"{manifest.name}:{manifest.version}")  # checks what was written
    return bundle


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
    """Read-only files, flushed to disk, as the repository keeps its versions."""
    for file in path.rglob("*"):
        if file.is_file():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
            file.chmod(0o444)
    fsync_dir(path)
