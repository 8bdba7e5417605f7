"""Where a repository's committed versions live when it is not a local directory.

:class:`~ferry.repository.store.Repository` is the one implementation of the repository's
rules (names, numbering, the manifest written last, every file checked against its sha256
before use). This module is its storage seam for object storage: an ``s3://bucket/prefix``
URL is read and written through fsspec (s3fs), with the same layout as a local repository::

    s3://bucket/prefix/<model>/<version>/model.onnx      uploaded first
    s3://bucket/prefix/<model>/<version>/manifest.json   uploaded last: the version exists
    s3://bucket/prefix/.locks/<model>/<version>          claims a number (never reused)

Credentials come from the standard AWS environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``, profiles and
instance roles through botocore's usual chain); ``AWS_ENDPOINT_URL`` points at an
S3-compatible server (MinIO, Ceph, moto). Numbers are claimed and manifests created with
S3's conditional writes (``If-None-Match: *``), so two machines importing the same model at
once get two distinct versions and neither overwrites the other's manifest.

Listings are never cached (a poll sees a version uploaded a moment ago). Error messages
name the URL and the operation, never a credential.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ferry.errors import InputError, IntegrityError, MissingDependencyError, UnavailableError

__all__ = ["ObjectStorage", "default_cache_dir", "remote_url", "safe_relative"]

#: URL schemes served by :class:`ObjectStorage`.
SCHEMES = ("s3",)
_LOCKS = ".locks"
#: A ``pathlib.Path("s3://b/p")`` prints as ``s3:/b/p``: such a path still means the URL.
_COLLAPSED = re.compile(r"^(s3):/(?!/)(.+)$")
_URL = re.compile(r"^(s3)://([^/]+)(/.*)?$")


def remote_url(root: Path | str) -> str | None:
    """The object-storage URL ``root`` names (``s3://bucket/prefix``), or None for a path.

    A :class:`~pathlib.Path` made from the URL (as settings and CLI options build) is
    recognized too, since it collapses ``//`` into ``/``.

    Raises:
        InputError: an ``s3://`` URL without a bucket.
    """
    text = str(root)
    collapsed = _COLLAPSED.match(text) if isinstance(root, Path) else None
    if collapsed:
        text = f"{collapsed.group(1)}://{collapsed.group(2)}"
    if not text.startswith(tuple(f"{s}:" for s in SCHEMES)):
        return None
    match = _URL.match(text)
    if match is None:
        raise InputError(f"invalid repository URL {text!r}: expected s3://BUCKET or "
                         "s3://BUCKET/PREFIX")
    prefix = (match.group(3) or "").strip("/")
    return f"{match.group(1)}://{match.group(2)}" + (f"/{prefix}" if prefix else "")


def default_cache_dir(url: str) -> Path:
    """Local cache of a remote repository's verified versions.

    ``$FERRY_CACHE_DIR`` (else ``$XDG_CACHE_HOME/ferry``, else ``~/.cache/ferry``), then
    ``repositories/<sha256 of the URL, 16 hex digits>``.
    """
    base = os.environ.get("FERRY_CACHE_DIR")
    if base:
        root = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "ferry"
    return root / "repositories" / hashlib.sha256(url.encode()).hexdigest()[:16]


def safe_relative(rel: str, where: str) -> PurePosixPath:
    """Check a manifest's file name before it becomes a local path.

    Raises:
        IntegrityError: absolute, empty, or with an empty, ``.`` or ``..`` part.
    """
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise IntegrityError(f"model {where}: its manifest lists file {rel!r}, which is not "
                             "a plain relative path inside the version")
    return PurePosixPath(rel)


class ObjectStorage:
    """A repository's objects under one URL (``s3://bucket/prefix``), through fsspec.

    Args:
        url: the normalized URL (:func:`remote_url`).

    Raises:
        MissingDependencyError: fsspec or s3fs is not installed (``ferry[s3]``).
    """

    def __init__(self, url: str) -> None:
        try:
            import fsspec  # type: ignore[import-untyped]
            import s3fs  # type: ignore[import-untyped]  # noqa: F401  (the s3:// backend)
        except ImportError:
            raise MissingDependencyError(f"the repository {url}", "s3") from None
        self.url = url
        self._base = url.split("://", 1)[1]
        options: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["endpoint_url"] = endpoint
        self._fs = fsspec.filesystem(url.split("://", 1)[0], **options)

    def __repr__(self) -> str:
        return f"ObjectStorage({self.url!r})"

    def _path(self, rel: str) -> str:
        return f"{self._base}/{rel}" if rel else self._base

    def _unavailable(self, action: str, rel: str, exc: BaseException) -> UnavailableError:
        # botocore's messages name the operation and the error code, never a secret key.
        detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        where = f"{self.url}/{rel}" if rel else self.url
        return UnavailableError(
            f"cannot {action} {where}: {type(exc).__name__}: {detail}",
            hint="check the AWS_* credentials and AWS_ENDPOINT_URL, and that the bucket "
                 "exists",
        )

    # ----------------------------------------------------------------- reading

    def exists(self) -> bool:
        """Whether the bucket (and prefix, if any) holds anything."""
        try:
            return bool(self._fs.exists(self._base))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self._unavailable("reach", "", exc) from None

    def children(self, rel: str = "") -> list[str]:
        """Names directly below ``rel`` (empty when there is nothing)."""
        try:
            found = self._fs.ls(self._path(rel), detail=False)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._unavailable("list", rel, exc) from None
        return sorted({str(p).rstrip("/").rsplit("/", 1)[-1] for p in found})

    def committed(self, name: str, manifest_name: str) -> list[int]:
        """Versions of ``name`` whose manifest exists (one flat listing), ascending."""
        prefix = self._path(name) + "/"
        try:
            found = self._fs.find(prefix)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._unavailable("list", name, exc) from None
        versions = set()
        for path in found:
            version, _, rest = str(path)[len(prefix):].partition("/")
            if rest == manifest_name and version.isdigit():
                versions.add(int(version))
        return sorted(versions)

    def files(self, rel: str) -> list[str]:
        """Names of the objects directly below ``rel`` (not the prefixes), sorted."""
        try:
            found = self._fs.ls(self._path(rel), detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._unavailable("list", rel, exc) from None
        return sorted(str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in found
                      if e.get("type") == "file")

    def read(self, rel: str, limit: int | None = None) -> bytes | None:
        """An object's bytes (at most ``limit`` + 1 of them), or None when it is absent."""
        try:
            with self._fs.open(self._path(rel), "rb") as handle:
                data: bytes = handle.read(-1 if limit is None else limit + 1)
                return data
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._unavailable("read", rel, exc) from None

    def download(self, rel: str, target: Path) -> None:
        """Copy one object to a local file.

        Raises:
            FileNotFoundError: no such object.
        """
        try:
            self._fs.get_file(self._path(rel), str(target))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise self._unavailable("download", rel, exc) from None

    # ----------------------------------------------------------------- writing

    def upload(self, source: Path, rel: str) -> None:
        """Copy a local file to an object (replacing one of that name)."""
        try:
            self._fs.put_file(str(source), self._path(rel))
        except Exception as exc:
            raise self._unavailable("upload to", rel, exc) from None

    def write(self, rel: str, data: bytes, *, exclusive: bool = False) -> bool:
        """Write an object; with ``exclusive``, only if it does not exist yet.

        Returns:
            False when ``exclusive`` and the object already existed (nothing written).
        """
        try:
            self._fs.pipe_file(self._path(rel), data,
                               mode="create" if exclusive else "overwrite")
        except FileExistsError:
            return False
        except Exception as exc:
            if exclusive and "PreconditionFailed" in f"{type(exc).__name__} {exc}":
                return False
            raise self._unavailable("write", rel, exc) from None
        return True

    def claim(self, name: str) -> int:
        """Claim the model's next free version number (never one given before).

        The number is one above every version prefix (committed or half uploaded) and
        every earlier claim; the claim object is created only if absent, so a concurrent
        writer that picked the same number moves on to the next.
        """
        taken = [int(v) for v in self.children(name) if v.isdigit()]
        claims = [int(v) for v in self.children(f"{_LOCKS}/{name}") if v.isdigit()]
        version = max([0, *taken, *claims]) + 1
        for _ in range(100):
            if self.write(f"{_LOCKS}/{name}/{version}", str(os.getpid()).encode(),
                          exclusive=True):
                return version
            version += 1
        raise UnavailableError(f"cannot claim a version number for model {name!r} in "
                               f"{self.url}: 100 numbers in a row were taken")

    def remove(self, rel: str) -> None:
        """Remove one object or everything below a prefix (absent is fine)."""
        try:
            self._fs.rm(self._path(rel), recursive=True)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._unavailable("delete", rel, exc) from None
