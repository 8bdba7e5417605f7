"""The model repository: a plain directory of immutable, hash-checked model versions.

Layout::

    <root>/
      <model>/<version>/manifest.json   one directory per version, never changed once written
      <model>/<version>/model.onnx      ... and the artifact files the manifest lists
      <model>/<version>/manifest.sig    signatures over manifest.json, if signed (signing.py)
      .staging/<pid>-<random>/          versions being written (invisible to readers)
      .locks/<model>.lock               serializes version numbering per model, and holds
                                        the highest number given (never reused)

A new version is written completely into ``.staging``, then renamed into place while the
model's lock is held, so two concurrent imports get two distinct numbers and a reader never
sees half a version. A process killed mid-import leaves only its staging directory, which
the next writer removes.

The root may also be an object-storage URL, ``s3://bucket/prefix``
(:mod:`ferry.repository.storage`): the same layout and rules, with the files uploaded first
and the manifest last (a version without its manifest is invisible), version numbers claimed
with conditional writes, and :meth:`Repository.open` downloading a version into a local
cache (``root``) keyed by its manifest's sha256 and checking every file before use.

With ``trusted_keys``, :meth:`Repository.open` also requires a signature by one of those
keys over the version's manifest (:mod:`ferry.repository.signing`); since the manifest holds
every file's sha256, the signature covers the whole version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ferry.errors import InputError, IntegrityError, NotFoundError, UntrustedArtifactError
from ferry.repository.atomic import fsync_dir
from ferry.repository.hashing import hash_tree
from ferry.repository.layout import MANIFEST_NAME, SIGNATURE_NAME, ModelRef, check_model_name
from ferry.repository.manifest import FileEntry, Manifest, parse_manifest, read_manifest
from ferry.repository.signing import (
    MAX_SIGNATURE_FILE,
    ManifestSignature,
    SigningKey,
    TrustedKey,
    TrustedKeys,
    check_signatures,
    dump_signatures,
    parse_signatures,
)
from ferry.repository.storage import ObjectStorage, default_cache_dir, remote_url, safe_relative
from ferry.repository.versions import VersionPolicy

__all__ = ["Repository", "StoredModel"]

_STAGING = ".staging"
_LOCKS = ".locks"
#: A remote repository's cache: ``<root>/.versions/<manifest sha256>/<model>/<version>/``.
_CACHE = ".versions"
#: The largest model-level file (``<model>/config.toml``) mirrored from a remote repository.
_MAX_MODEL_FILE = 1 << 20
#: Files of a version directory that its manifest does not list.
_UNLISTED = frozenset({MANIFEST_NAME, SIGNATURE_NAME})


@dataclass(frozen=True)
class StoredModel:
    """A committed version whose files were checked against its manifest."""

    manifest: Manifest
    path: Path

    @property
    def artifact_path(self) -> Path:
        """Absolute path of the main artifact file."""
        return self.path / self.manifest.artifact


class Repository:
    """A model repository rooted at a directory (created on first write) or a URL.

    Args:
        root: the directory, or ``s3://bucket/prefix`` (needs ``ferry[s3]``).
        trusted_keys: when given, :meth:`open` refuses a version without a signature by
            one of these keys that verifies over its manifest.
        cache_dir: a remote repository's local cache (default:
            :func:`~ferry.repository.storage.default_cache_dir`); it becomes ``root``.
        cache_versions: a remote repository keeps at most this many downloaded versions
            of each model in its cache (the oldest used are removed first).

    Attributes:
        location: what users named: the directory or the URL (for messages).
        storage: the object storage of a remote repository, None for a directory.
    """

    def __init__(self, root: Path | str, *, trusted_keys: TrustedKeys | None = None,
                 cache_dir: Path | str | None = None, cache_versions: int = 4) -> None:
        url = remote_url(root)
        self.storage: ObjectStorage | None = ObjectStorage(url) if url is not None else None
        if url is not None:
            self.root = Path(cache_dir) if cache_dir is not None else default_cache_dir(url)
            self.location = url
        else:
            self.root = Path(root)
            self.location = str(self.root)
        self.trusted_keys = trusted_keys
        self.cache_versions = max(1, cache_versions)

    def __repr__(self) -> str:
        return f"Repository({self.location!r})"

    def exists(self) -> bool:
        """Whether the repository's directory (or bucket and prefix) exists."""
        return self.storage.exists() if self.storage is not None else self.root.is_dir()

    # ----------------------------------------------------------------- reading

    def models(self) -> list[str]:
        """Names of the models that have at least one committed version, sorted."""
        if self.storage is not None:
            return [name for name in self.storage.children()
                    if not name.startswith(".") and _valid_name(name) and self.versions(name)]
        if not self.root.is_dir():
            return []
        names = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if self.versions(entry.name):
                names.append(entry.name)
        return names

    def versions(self, name: str) -> list[int]:
        """Committed versions of a model, ascending (empty if the model does not exist)."""
        if self.storage is not None:
            return self.storage.committed(check_model_name(name), MANIFEST_NAME)
        model_dir = self.root / check_model_name(name)
        if not model_dir.is_dir():
            return []
        found = []
        for entry in model_dir.iterdir():
            if entry.name.isdigit() and (entry / MANIFEST_NAME).is_file():
                found.append(int(entry.name))
        return sorted(found)

    def model_dir(self, name: str) -> Path:
        """The directory of a model's own files beside its versions (``config.toml``).

        For a remote repository: a local mirror of the objects directly under
        ``<model>/`` whose names are plain (letters, digits, ``_.-``), refreshed on each
        call (one listing, one download per file, each replaced atomically; files gone
        from the bucket are removed).

        Raises:
            InputError: such a remote file is larger than 1 MiB.
        """
        local = self.root / check_model_name(name)
        if self.storage is None:
            return local
        remote = [file for file in self.storage.files(name) if _valid_name(file)]
        if local.is_dir():
            for entry in local.iterdir():
                if entry.is_file() and entry.name not in remote:
                    entry.unlink(missing_ok=True)
        for file in remote:
            data = self.storage.read(f"{name}/{file}", _MAX_MODEL_FILE)
            if data is None:
                continue
            if len(data) > _MAX_MODEL_FILE:
                raise InputError(f"{self.location}/{name}/{file} is larger than 1 MiB; a "
                                 "model's own files are small settings files")
            local.mkdir(parents=True, exist_ok=True)
            tmp = local / f".{file}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.write_bytes(data)
            os.replace(tmp, local / file)
        return local

    def resolve(self, ref: ModelRef | str) -> int:
        """Return the version a reference names: its own, or the model's latest.

        Raises:
            NotFoundError: no such model, or no such version (the message lists them).
        """
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        have = self.versions(ref.name)
        if not have:
            known = ", ".join(self.models()) or "none"
            raise NotFoundError(
                f"model {ref.name!r} is not in repository {self.location!r} (models: {known})"
            )
        if ref.version is None:
            return have[-1]
        if ref.version not in have:
            raise NotFoundError(
                f"model {ref.name!r} has no version {ref.version} "
                f"(versions: {', '.join(map(str, have))})"
            )
        return ref.version

    def select(self, name: str, policy: VersionPolicy) -> list[int]:
        """The versions of ``name`` that a version policy chooses."""
        return policy.select(self.versions(name))

    def manifest(self, ref: ModelRef | str) -> Manifest:
        """Read a version's manifest without hashing its files (for listings)."""
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        if self.storage is not None:
            _, where, raw = self._manifest_bytes(ref)
            return parse_manifest(raw, where)
        version = self.resolve(ref)
        return read_manifest(self.root / ref.name / str(version) / MANIFEST_NAME)

    def open(self, ref: ModelRef | str) -> StoredModel:
        """Return a version after checking every file against the manifest.

        With trusted keys, the manifest's signature is checked first (on the same bytes
        that are then parsed).

        Raises:
            NotFoundError: no such model or version.
            IntegrityError: a file is missing, unexpected, a link, or was modified; the
                message names it.
            UntrustedArtifactError: trusted keys are set and the version is unsigned, signed
                by no trusted key, or its signature does not verify; the message names it.
        """
        path, where, raw = self._manifest_bytes(ref)
        if self.trusted_keys is not None:
            check_signatures(raw, self._signatures(path, where), self.trusted_keys.keys(), where)
        manifest = parse_manifest(raw, where)
        self._checked(path, raw, manifest, where)
        return StoredModel(manifest, path)

    def signatures(self, ref: ModelRef | str) -> list[ManifestSignature]:
        """The signatures a version carries, unchecked (empty when it is not signed).

        Raises:
            NotFoundError: no such model or version.
            UntrustedArtifactError: its ``manifest.sig`` is not a valid signature file.
        """
        path, where, _ = self._manifest_bytes(ref)
        return self._signatures(path, where)

    def verify_signature(self, ref: ModelRef | str,
                         trusted: TrustedKeys | dict[str, TrustedKey]) -> TrustedKey:
        """Return the trusted key that signed a version, after checking its files too.

        Raises:
            NotFoundError, IntegrityError: as :meth:`open`.
            UntrustedArtifactError: unsigned, signed by no trusted key, or the signature
                does not verify; the message says which.
        """
        path, where, raw = self._manifest_bytes(ref)
        keys = trusted.keys() if isinstance(trusted, TrustedKeys) else trusted
        signer = check_signatures(raw, self._signatures(path, where), keys, where)
        self._checked(path, raw, parse_manifest(raw, where), where)
        return signer

    def _manifest_bytes(self, ref: ModelRef | str) -> tuple[Path, str, bytes]:
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        version = self.resolve(ref)
        where = f"{ref.name}:{version}"
        if self.storage is not None:
            raw = self.storage.read(f"{ref.name}/{version}/{MANIFEST_NAME}")
            if raw is None:
                raise IntegrityError(f"model {where}: {MANIFEST_NAME} is missing")
            return self._cache_path(ref.name, version, raw), where, raw
        path = self.root / ref.name / str(version)
        try:
            return path, where, (path / MANIFEST_NAME).read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"model {where}: {MANIFEST_NAME} is missing") from None

    def _signatures(self, path: Path, where: str) -> list[ManifestSignature]:
        if self.storage is not None:
            found = self.storage.read(f"{path.parent.name}/{path.name}/{SIGNATURE_NAME}",
                                      MAX_SIGNATURE_FILE)
            return [] if found is None else parse_signatures(found, where)
        try:
            with (path / SIGNATURE_NAME).open("rb") as handle:
                raw = handle.read(MAX_SIGNATURE_FILE + 1)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise UntrustedArtifactError(f"model {where}: cannot read {SIGNATURE_NAME} "
                                         f"({exc.strerror})") from None
        return parse_signatures(raw, where)

    def _cache_path(self, name: str, version: int, raw_manifest: bytes) -> Path:
        digest = hashlib.sha256(raw_manifest).hexdigest()
        return self.root / _CACHE / digest / name / str(version)

    def _checked(self, path: Path, raw: bytes, manifest: Manifest, where: str) -> None:
        """Check a version's files against its manifest (a remote one's cached copy).

        A remote version is downloaded into its cache directory first, unless an earlier
        download is there; a cached copy that fails the check is removed, so the next
        call downloads it again.
        """
        if self.storage is None:
            _verify(path, manifest, where)
            return
        fresh = not (path / MANIFEST_NAME).is_file()
        if fresh:
            self._download(path, raw, manifest, where)
        try:
            _verify(path, manifest, where)
        except IntegrityError:
            _remove_tree(path.parent.parent)
            raise
        os.utime(path.parent.parent)  # most recently used: the last one the bound removes
        if fresh:
            self._bound_cache(manifest.name, keep=path.parent.parent)

    def _download(self, path: Path, raw: bytes, manifest: Manifest, where: str) -> None:
        assert self.storage is not None
        prefix = f"{path.parent.name}/{path.name}"
        with self.stage() as staging:
            for rel in manifest.files:
                target = staging / safe_relative(rel, where)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self.storage.download(f"{prefix}/{rel}", target)
                except FileNotFoundError:
                    raise IntegrityError(f"model {where}: file {rel!r} is missing from "
                                         f"{self.location}") from None
            (staging / MANIFEST_NAME).write_bytes(raw)
            _seal(staging)
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # another process put the same copy there
                os.rename(staging, path)

    def _bound_cache(self, name: str, keep: Path) -> None:
        """Remove the least recently used cached versions of ``name`` beyond the bound."""
        cache = self.root / _CACHE
        entries = [e for e in cache.iterdir() if (e / name).is_dir() and e != keep]
        entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
        for entry in entries[self.cache_versions - 1:]:
            _remove_tree(entry)

    # ----------------------------------------------------------------- writing

    def sign(self, ref: ModelRef | str, key: SigningKey) -> ManifestSignature:
        """Sign a version's manifest with ``key``, after checking every file against it.

        The signature is added to the version's ``manifest.sig`` (replacing an earlier one
        by the same key), which is rewritten atomically under the model's lock.

        Raises:
            NotFoundError, IntegrityError: as :meth:`open` (a damaged version is never
                signed).
            UntrustedArtifactError: the existing ``manifest.sig`` is not a valid signature
                file.
        """
        path, where, raw = self._manifest_bytes(ref)
        self._checked(path, raw, parse_manifest(raw, where), where)
        signature = key.sign(raw)
        name = path.parent.name
        with self._lock(name):
            kept = [s for s in self._signatures(path, where) if s.key_id != key.key_id]
            data = dump_signatures([*kept, signature])
            if self.storage is not None:  # one PUT: readers see the old object or the new
                self.storage.write(f"{name}/{path.name}/{SIGNATURE_NAME}", data)
                return signature
            # Written in a staging directory and renamed into place: a reader sees the old
            # file or the new, and a crash leaves nothing in the version directory.
            staging_root = self.root / _STAGING
            staging_root.mkdir(parents=True, exist_ok=True)
            tmp_dir = staging_root / f"{os.getpid()}-sig-{uuid.uuid4().hex[:12]}"
            tmp_dir.mkdir()
            try:
                tmp = tmp_dir / SIGNATURE_NAME
                with tmp.open("wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                tmp.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                os.replace(tmp, path / SIGNATURE_NAME)
                fsync_dir(path)
            except OSError as exc:
                raise InputError(f"cannot write {SIGNATURE_NAME} into model {where}'s "
                                 f"directory ({exc.strerror})") from None
            finally:
                _remove_tree(tmp_dir)
        return signature

    @contextlib.contextmanager
    def stage(self) -> Iterator[Path]:
        """Yield an empty private directory to write a new version into.

        Whatever is left of it when the block ends (an error, or nothing committed) is
        removed. Leftovers of processes that died are removed first.
        """
        staging_root = self.root / _STAGING
        staging_root.mkdir(parents=True, exist_ok=True)
        self._sweep_staging(staging_root)
        path = staging_root / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        path.mkdir()
        try:
            yield path
        finally:
            if path.exists():
                _remove_tree(path)

    def commit(self, staging: Path, draft: Manifest) -> Manifest:
        """Turn a staging directory into the next version of ``draft.name``.

        The draft's ``version`` and ``files`` are filled in here: the version is the next
        free number, chosen under the model's lock; ``files`` hashes what ``staging`` holds.

        Returns:
            The manifest as written.

        Raises:
            IntegrityError: the artifact named by the draft is not in the staging directory.
        """
        name = check_model_name(draft.name)
        hashed = hash_tree(staging, exclude=frozenset({MANIFEST_NAME}))
        if SIGNATURE_NAME in hashed:
            raise IntegrityError(f"{SIGNATURE_NAME!r} is a reserved name in a version directory "
                                 "(signatures of the manifest); rename that artifact file")
        if draft.artifact not in hashed:
            raise IntegrityError(f"artifact {draft.artifact!r} was not written to {staging}")
        links = [rel for rel, (digest, _) in hashed.items() if digest == "symlink"]
        if links:
            raise IntegrityError(f"artifact file {links[0]!r} is a symbolic link; copy it instead")
        files = {rel: FileEntry(sha256=h, size=n) for rel, (h, n) in hashed.items()}
        if self.storage is not None:
            return self._publish(staging, draft, files)
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        with self._lock(name) as lock:
            # The lock file remembers the highest number ever given, so a deleted version's
            # number is never reused for different content.
            lock.seek(0)
            given = lock.read().strip()
            taken = [int(e.name) for e in model_dir.iterdir() if e.name.isdigit()]
            version = max([*taken, int(given) if given.isdigit() else 0]) + 1
            lock.seek(0)
            lock.truncate()
            lock.write(str(version).encode())
            lock.flush()
            manifest = draft.model_copy(update={"version": version, "files": files})
            (staging / MANIFEST_NAME).write_bytes(manifest.to_json())
            _seal(staging)
            os.rename(staging, model_dir / str(version))
            fsync_dir(model_dir)
        return manifest

    def _publish(self, staging: Path, draft: Manifest, files: dict[str, FileEntry]) -> Manifest:
        """Upload a staged version: a claimed number, the files, then the manifest last."""
        assert self.storage is not None
        name = draft.name
        with self._lock(name):
            version = self.storage.claim(name)
            manifest = draft.model_copy(update={"version": version, "files": files})
            raw = manifest.to_json()
            for rel in sorted(files):
                self.storage.upload(staging / rel, f"{name}/{version}/{rel}")
            if not self.storage.write(f"{name}/{version}/{MANIFEST_NAME}", raw, exclusive=True):
                raise IntegrityError(f"model {name}:{version}: another writer created its "
                                     f"{MANIFEST_NAME} in {self.location} first; import again")
        # The staged files are this version's cached copy: serving it downloads nothing.
        (staging / MANIFEST_NAME).write_bytes(raw)
        _seal(staging)
        target = self._cache_path(name, version, raw)
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.rename(staging, target)
        return manifest

    def delete(self, ref: ModelRef | str) -> list[int]:
        """Delete one version, or every version of a model when none is named.

        The version directory is first renamed out of sight, so readers see it whole or
        not at all. Returns the versions deleted.
        """
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        targets = [self.resolve(ref)] if ref.version is not None else self.versions(ref.name)
        if not targets:
            self.resolve(ref)  # raises the NotFoundError that names what exists
        if self.storage is not None:
            with self._lock(ref.name):
                for version in targets:  # the manifest first: the version is gone at once
                    self.storage.remove(f"{ref.name}/{version}/{MANIFEST_NAME}")
                    self.storage.remove(f"{ref.name}/{version}")
            return targets
        staging_root = self.root / _STAGING
        staging_root.mkdir(parents=True, exist_ok=True)
        with self._lock(ref.name):
            for version in targets:
                doomed = staging_root / f"{os.getpid()}-deleted-{uuid.uuid4().hex[:12]}"
                os.rename(self.root / ref.name / str(version), doomed)
                _remove_tree(doomed)
            model_dir = self.root / ref.name
            if not any(e.name.isdigit() for e in model_dir.iterdir()):
                shutil.rmtree(model_dir, ignore_errors=True)
        return targets

    # ----------------------------------------------------------------- helpers

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[BinaryIO]:
        lock_dir = self.root / _LOCKS
        lock_dir.mkdir(parents=True, exist_ok=True)
        with (lock_dir / f"{name}.lock").open("a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _sweep_staging(staging_root: Path) -> None:
        """Remove staging directories whose writing process no longer exists."""
        for entry in staging_root.iterdir():
            pid_text = entry.name.partition("-")[0]
            if pid_text.isdigit() and not _alive(int(pid_text)):
                _remove_tree(entry)


def _valid_name(name: str) -> bool:
    try:
        check_model_name(name)
    except InputError:
        return False
    return True


def _verify(path: Path, manifest: Manifest, where: str) -> None:
    if manifest.name != path.parent.name or manifest.version != int(path.name):
        raise IntegrityError(
            f"model {where}: manifest says {manifest.name}:{manifest.version}; "
            "a version directory was copied or renamed by hand"
        )
    actual = hash_tree(path, exclude=_UNLISTED)
    for rel, entry in manifest.files.items():
        if rel not in actual:
            raise IntegrityError(f"model {where}: file {rel!r} is missing")
        digest, size = actual[rel]
        if digest == "symlink":
            raise IntegrityError(f"model {where}: file {rel!r} is a symbolic link")
        if digest != entry.sha256:
            raise IntegrityError(
                f"model {where}: file {rel!r} does not match its recorded sha256 "
                f"(expected {entry.sha256[:16]}..., got {digest[:16]}..., "
                f"{size} bytes vs {entry.size} recorded); it was modified after import",
                hint="re-import the model, or restore the file from a backup",
            )
    extra = sorted(set(actual) - set(manifest.files))
    if extra:
        raise IntegrityError(
            f"model {where}: unexpected file {extra[0]!r} that the manifest does not list"
        )


def _seal(path: Path) -> None:
    """Make every file of a version read-only and flush it to disk before it is published."""
    for file in path.rglob("*"):
        if file.is_file() and not file.is_symlink():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
            file.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    fsync_dir(path)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
