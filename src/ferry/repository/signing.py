"""Signed model versions: Ed25519 signatures over a version's manifest, kept in ``manifest.sig``.

A version's ``manifest.json`` lists the sha256 and size of every file of the version, and
:meth:`Repository.open <ferry.repository.store.Repository.open>` checks them on every load,
so one signature over the manifest covers the whole version. The manifest also names its
model and version, so a signed directory copied under another name or number fails the
integrity check: a signature vouches for exactly one ``name:version``.

What is signed: :data:`CONTEXT` followed by the exact bytes of ``manifest.json``. Manifests
are written once and never changed, so their bytes need no canonical form; the context
string keeps a manifest signature from meaning anything else the same key might sign.

``manifest.sig`` sits beside the manifest and is not listed in it (it signs the manifest)::

    {"signatures": [{"algorithm": "ed25519", "key_id": "3f2a9c0d1b7e4a55",
                     "manifest_sha256": "<hex>", "signature": "<base64>",
                     "signed_at": "2026-05-01T12:00:00Z"}]}

A version may carry several signatures, one per key (signing again with the same key
replaces that key's entry); it is trusted when one signature by a trusted key verifies.

Keys: a private key is a PKCS#8 PEM file (mode 0600, encrypted when a passphrase is given);
the trusted keys file lists public keys, one a line, like SSH's ``authorized_keys``::

    # comments and blank lines are ignored
    ed25519 <base64 of the 32-byte raw public key> release-ci@build-1

A key id is the first 16 hex digits of the sha256 of the raw public key.

``cryptography`` (the ``security`` extra) is imported inside the functions that use it, so
reading an unsigned repository does not need it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferry.errors import ConfigError, InputError, MissingDependencyError, UntrustedArtifactError
from ferry.repository.layout import MANIFEST_NAME, SIGNATURE_NAME

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "ALGORITHM",
    "CONTEXT",
    "ManifestSignature",
    "SigningKey",
    "TrustedKey",
    "TrustedKeys",
    "check_signatures",
    "dump_signatures",
    "key_id",
    "parse_signatures",
    "parse_trusted_keys",
    "public_key_line",
]

ALGORITHM = "ed25519"
#: Prefixed to the manifest bytes before signing (domain separation).
CONTEXT = b"ferry manifest signature v1\n"
#: A signature file larger than this is refused unread (a few signatures take ~300 bytes each).
MAX_SIGNATURE_FILE = 1 << 20


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - the security extra is missing
        raise MissingDependencyError("signed models", "security") from None
    return ed25519


def key_id(raw_public: bytes) -> str:
    """The id of a public key: the first 16 hex digits of the sha256 of its 32 raw bytes."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def public_key_line(raw_public: bytes, comment: str = "") -> str:
    """A trusted keys file line for a public key: ``ed25519 <base64> <comment>``."""
    line = f"{ALGORITHM} {base64.b64encode(raw_public).decode('ascii')}"
    comment = " ".join(comment.split())  # one line, whatever the caller passed
    return f"{line} {comment}" if comment else line


# --------------------------------------------------------------------- private keys


class SigningKey:
    """An Ed25519 private key that signs manifests. Its bytes are never shown or logged."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        from cryptography.hazmat.primitives import serialization

        self.public_raw: bytes = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id(self.public_raw)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        return cls(_ed25519().Ed25519PrivateKey.generate())

    @classmethod
    def read(cls, path: Path, passphrase: bytes | None = None) -> SigningKey:
        """Read a PKCS#8 PEM private key file (``passphrase`` if it is encrypted).

        Raises:
            ConfigError: the file cannot be read, is not an Ed25519 private key, or needs a
                passphrase that was not given or is wrong (the key's bytes are never shown).
        """
        ed25519 = _ed25519()
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization

        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"signing key {str(path)!r}: cannot read it ({exc.strerror})"
                              ) from None
        try:
            key = serialization.load_pem_private_key(data, password=passphrase)
        except TypeError:
            wanted = "is encrypted: give its passphrase" if passphrase is None else \
                "is not encrypted: give no passphrase"
            raise ConfigError(f"signing key {str(path)!r} {wanted}",
                              hint="set FERRY_SIGNING_KEY_PASSPHRASE") from None
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(f"signing key {str(path)!r} is not a PEM private key, or its "
                              "passphrase is wrong",
                              hint="make one with: ferry signing-key new KEY.pem") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError(f"signing key {str(path)!r} is a {type(key).__name__}, not an "
                              "Ed25519 key", hint="make one with: ferry signing-key new KEY.pem")
        return cls(key)

    def write(self, path: Path, passphrase: bytes | None = None) -> None:
        """Write the key to a new file (mode 0600) as PKCS#8 PEM, encrypted with ``passphrase``.

        Raises:
            InputError: the file exists (a key is never overwritten).
        """
        from cryptography.hazmat.primitives import serialization

        encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                      else serialization.NoEncryption())
        pem = self._key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8, encryption)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise InputError(f"{str(path)!r} already exists: ferry never overwrites a key",
                             hint="choose another path, or delete the old key first") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())

    def public_line(self, comment: str = "") -> str:
        """This key's line for a trusted keys file."""
        return public_key_line(self.public_raw, comment)

    def sign(self, manifest: bytes, *, now: datetime | None = None) -> ManifestSignature:
        """Sign the bytes of a manifest file."""
        signed_at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        return ManifestSignature(
            key_id=self.key_id,
            manifest_sha256=hashlib.sha256(manifest).hexdigest(),
            signature=self._key.sign(CONTEXT + manifest),
            signed_at=signed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )


# --------------------------------------------------------------------- signature files


@dataclass(frozen=True)
class ManifestSignature:
    """One signature in ``manifest.sig``."""

    key_id: str
    manifest_sha256: str
    signature: bytes
    signed_at: str
    algorithm: str = ALGORITHM

    def to_dict(self) -> dict[str, str]:
        """The JSON object written to ``manifest.sig``."""
        return {"algorithm": self.algorithm, "key_id": self.key_id,
                "manifest_sha256": self.manifest_sha256,
                "signature": base64.b64encode(self.signature).decode("ascii"),
                "signed_at": self.signed_at}


def dump_signatures(signatures: list[ManifestSignature]) -> bytes:
    """The bytes of a ``manifest.sig`` holding ``signatures``."""
    data = {"signatures": [s.to_dict() for s in signatures]}
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def parse_signatures(raw: bytes, where: str) -> list[ManifestSignature]:
    """Read the bytes of a ``manifest.sig``; ``where`` (``name:version``) names it in errors.

    Raises:
        UntrustedArtifactError: not a signature file this ferry reads.
    """
    def bad(why: str) -> UntrustedArtifactError:
        return UntrustedArtifactError(
            f"model {where}: {SIGNATURE_NAME} is not a valid signature file ({why})",
            hint=f"remove {SIGNATURE_NAME} and sign the version again: ferry sign {where} "
                 "--key KEY.pem")

    if len(raw) > MAX_SIGNATURE_FILE:
        raise bad(f"larger than {MAX_SIGNATURE_FILE} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("not JSON") from None
    entries = data.get("signatures") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise bad("no 'signatures' list")
    found = []
    for number, entry in enumerate(entries, 1):
        fields = ("algorithm", "key_id", "manifest_sha256", "signature", "signed_at")
        if not isinstance(entry, dict) or not all(isinstance(entry.get(f), str) for f in fields):
            raise bad(f"signature {number} lacks one of the fields {', '.join(fields)}")
        try:
            signature = base64.b64decode(entry["signature"], validate=True)
        except binascii.Error:
            raise bad(f"signature {number} is not base64") from None
        found.append(ManifestSignature(key_id=entry["key_id"],
                                       manifest_sha256=entry["manifest_sha256"],
                                       signature=signature, signed_at=entry["signed_at"],
                                       algorithm=entry["algorithm"]))
    return found


# --------------------------------------------------------------------- trusted keys


@dataclass(frozen=True)
class TrustedKey:
    """A public key from the trusted keys file."""

    key_id: str
    public_raw: bytes
    comment: str

    def __str__(self) -> str:
        return f"{self.key_id} ({self.comment})" if self.comment else self.key_id


def parse_trusted_keys(text: str, source: str) -> dict[str, TrustedKey]:
    """Parse a trusted keys file: ``ed25519 <base64 raw key> [comment]`` lines, by key id.

    Blank lines and lines starting with ``#`` are ignored. A bad line is named by its
    number, never quoted (it might be a private key pasted by mistake).

    Raises:
        ConfigError: a line is not a public Ed25519 key line.
    """
    keys: dict[str, TrustedKey] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"trusted keys file {source!r}, line {number}"
        if line.startswith("-----BEGIN"):
            raise ConfigError(f"{where}: holds a PEM block; the file lists public key lines "
                              "only, and a private key must never be in it",
                              hint="print a key's line with: ferry signing-key public KEY.pem")
        parts = line.split(maxsplit=2)
        if parts[0] != ALGORITHM or len(parts) < 2:
            raise ConfigError(f"{where}: expected 'ed25519 <base64 public key> [comment]'")
        try:
            raw = base64.b64decode(parts[1], validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            raise ConfigError(f"{where}: the key is not the base64 of 32 bytes (an Ed25519 "
                              "public key)")
        keys[key_id(raw)] = TrustedKey(key_id(raw), raw, parts[2] if len(parts) > 2 else "")
    return keys


class TrustedKeys:
    """The trusted keys file a repository checks signatures against.

    The file is read now (an unreadable, invalid or empty file is refused here, at start),
    and again whenever it changes, so a key added or removed counts from the next load on.

    Raises:
        ConfigError: the file cannot be read, has a bad line, or lists no key.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str, TrustedKey] = {}
        if not self.keys():
            raise ConfigError(f"trusted keys file {str(self.path)!r} lists no key: every "
                              "version would be refused",
                              hint="add a line printed by: ferry signing-key public KEY.pem")

    def __repr__(self) -> str:
        return f"TrustedKeys({str(self.path)!r})"

    def keys(self) -> dict[str, TrustedKey]:
        """The trusted keys by id, re-read if the file changed since the last call.

        Raises:
            ConfigError: the file cannot be read or has a bad line.
        """
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                text = self.path.read_text(encoding="utf-8")
                self._keys = parse_trusted_keys(text, str(self.path))
                self._stamp = stamp
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"trusted keys file {str(self.path)!r}: cannot read it ({why})"
                              ) from None
        return self._keys


def check_signatures(manifest: bytes, signatures: list[ManifestSignature],
                     trusted: Mapping[str, TrustedKey], where: str) -> TrustedKey:
    """Return the trusted key whose signature over ``manifest`` verifies.

    Raises:
        UntrustedArtifactError: no signature, none by a trusted key, or none that verifies;
            the message names the version and the reason.
    """
    ed25519 = _ed25519()
    from cryptography.exceptions import InvalidSignature

    if not signatures:
        raise UntrustedArtifactError(
            f"model {where} is not signed, and a signature by a trusted key is required",
            hint=f"sign it where it was made: ferry sign {where} --key KEY.pem")
    ours = [s for s in signatures if s.key_id in trusted and s.algorithm == ALGORITHM]
    if not ours:
        ids = ", ".join(sorted({s.key_id for s in signatures}))
        raise UntrustedArtifactError(
            f"model {where} is signed only by key(s) not in the trusted keys file: {ids}",
            hint="add the signer's public key line to the trusted keys file, or sign the "
                 "version with a trusted key")
    digest = hashlib.sha256(manifest).hexdigest()
    for signature in ours:
        key = trusted[signature.key_id]
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(key.public_raw).verify(
                signature.signature, CONTEXT + manifest)
        except InvalidSignature:
            continue
        return key
    first = ours[0]
    if first.manifest_sha256 != digest:
        why = (f"{MANIFEST_NAME} changed after it was signed (sha256 {digest[:16]}..., "
               f"signed {first.manifest_sha256[:16]}...)")
    else:
        why = f"the signature does not match {MANIFEST_NAME} ({SIGNATURE_NAME} was altered)"
    raise UntrustedArtifactError(
        f"model {where}: the signature by trusted key {trusted[first.key_id]} does not "
        f"verify: {why}",
        hint="restore the version from its source, or re-import and sign it again")
