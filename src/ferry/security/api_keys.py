"""API keys: random secrets shown once, kept only as hashes in a keys file.

**The key** is ``fk_<id>_<secret>``: ``fk_`` tells it from a JWT at a glance (and lets
secret scanners find leaked ones), ``<id>`` is 8 hex characters, public, naming the key in
listings, logs and the audit log, and ``<secret>`` is ``secrets.token_urlsafe(32)`` (256
random bits). :meth:`KeyStore.add` returns it; it exists nowhere else afterwards.

**The keys file** is JSON, written by ``ferry keys add|revoke`` (:mod:`ferry.cli.commands.keys`)
and read by the server::

    {"format": "ferry-keys/1",
     "keys": [{"id": "3f9a1c2b", "name": "ci", "grants": ["infer:digits*"],
               "created": "2025-01-31T09:12:04+00:00", "sha256": "<64 hex>"}]}

``sha256`` is the SHA-256 of the secret part. A plain (unsalted, fast) hash is enough and
is what keeps verification cheap: the secret is 256 random bits, so there is nothing to
guess from the hash, unlike a password. Verification compares hashes with
:func:`hmac.compare_digest`. Revoking a key removes its entry.

**Writes are atomic**: a temporary file in the same directory, fsync, ``os.replace`` (and
an fsync of the directory), mode 0600; a reader sees the old file or the new one, never half
of one. ``add`` and ``revoke`` hold an exclusive ``flock`` on ``<file>.lock`` while they
read, change and write, so two ``ferry keys`` commands at once do not lose a change.

**Revocation without restart.** A server's store notices a changed file (its mtime, size or
inode) and reloads it; it looks at most once per ``reload_interval`` (1 s) of the monotonic
clock, on the next call after the interval, so the hot path makes no system call per
request. A revoked key therefore keeps working for at most that interval (plus the time to
the next request), and :meth:`KeyStore.refresh` bumps :attr:`KeyStore.generation` on each
reload so that caches of verified keys (:class:`~ferry.security.authn.Authenticate`) drop
theirs. A file made invalid by hand is not half-trusted: the store then accepts no key
until the file is fixed, and logs why (never a key or hash).
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry.errors import ConfigError, InputError, NotFoundError, quote_name
from ferry.security.grants import Grant, format_grant, parse_grants

__all__ = ["FILE_FORMAT", "KEY_PREFIX", "KeyRecord", "KeyStore", "parse_key"]

_log = logging.getLogger("ferry.security")

#: What every API key starts with (a JWT starts with ``eyJ``).
KEY_PREFIX = "fk_"
#: The ``format`` of the keys file this module reads and writes.
FILE_FORMAT = "ferry-keys/1"

_ID = re.compile(r"[0-9a-f]{8}")
_KEY = re.compile(r"fk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def parse_key(text: str) -> tuple[str, str] | None:
    """Split ``fk_<id>_<secret>`` into ``(id, secret)``; None if it is not shaped so."""
    match = _KEY.fullmatch(text)
    return None if match is None else (match[1], match[2])


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One API key as the keys file holds it: never the key itself.

    ``grants`` is one tuple per record, shared by every call the key authenticates (the
    authorizing policy caches its decisions per grants tuple).
    """

    id: str
    name: str
    grants: tuple[Grant, ...]
    created: dt.datetime
    sha256: str = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """The record as the keys file writes it."""
        return {"id": self.id, "name": self.name,
                "grants": [format_grant(grant) for grant in self.grants],
                "created": self.created.isoformat(timespec="seconds"), "sha256": self.sha256}


class KeyStore:
    """The API keys of one keys file: add, list, revoke (the CLI) and verify (the server).

    Args:
        path: the keys file; it may not exist yet (then no key is accepted until it does).
        reload_interval: most seconds between two looks at the file for changes.
        clock: the monotonic clock (tests pass a fake one).

    Raises:
        ConfigError: if the file exists but is not a valid keys file.
    """

    def __init__(self, path: str | Path, *, reload_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.reload_interval = reload_interval
        self._clock = clock
        #: Bumped on every reload: caches of verified keys compare it.
        self.generation = 0
        self._next_look = clock() + reload_interval
        # Stat before reading: a change in between is then seen at the next look.
        self._stamp = self._stat()
        self._by_id = self._index(self._read())

    def __repr__(self) -> str:
        return f"KeyStore({str(self.path)!r}, keys={len(self._by_id)})"

    # ------------------------------------------------------------------ serving

    def verify(self, key: str) -> KeyRecord | None:
        """The record of ``key`` if it is a current key of the file, else None.

        Cheap: a dict look-up and one SHA-256 of the secret; the file is looked at only
        when :attr:`reload_interval` has passed (:meth:`refresh`).
        """
        self.refresh()
        parts = parse_key(key)
        if parts is None:
            return None
        record = self._by_id.get(parts[0])
        if record is None:
            return None
        if not hmac.compare_digest(_digest(parts[1]), record.sha256):
            return None
        return record

    def refresh(self) -> int:
        """Reload the file if it changed (looked at once per interval); the generation.

        The common case costs one clock read and a comparison: what a cache of verified
        keys calls on every hit to learn of revocations.
        """
        now = self._clock()
        if now < self._next_look:
            return self.generation
        self._next_look = now + self.reload_interval
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._by_id = self._index(self._read())
            except ConfigError as error:
                # Fail closed: a file that cannot be read must not keep revoked keys alive.
                self._by_id = {}
                _log.error("API keys file %s is invalid, no API key is accepted until it is "
                           "fixed: %s", self.path, error.message)
            self.generation += 1
        return self.generation

    # --------------------------------------------------------------- managing

    def add(self, name: str, grants: Iterable[str]) -> str:
        """Create a key named ``name`` with ``grants``; return it (the only time it exists).

        Raises:
            InputError: if the name is invalid or taken, or a grant is invalid.
        """
        if not _NAME.fullmatch(name):
            raise InputError(f"invalid key name {quote_name(name)}",
                             hint="1-64 characters: letters, digits, '_', '.', '@', '-', "
                                  "starting with a letter or digit")
        if _ID.fullmatch(name):
            raise InputError(f"key name {quote_name(name)} looks like a key id",
                             hint="pick a name that is not 8 hex digits")
        parsed = parse_grants(grants)
        if not parsed:
            raise InputError("a key needs at least one grant", hint="e.g. --grant infer:*")
        with self._locked():
            records = self._read()
            if any(record.name == name for record in records):
                raise InputError(f"a key named {quote_name(name)} exists already",
                                 hint=f"revoke it first: ferry keys revoke {name}")
            taken = {record.id for record in records}
            key_id = secrets.token_hex(4)
            while key_id in taken:
                key_id = secrets.token_hex(4)
            secret = secrets.token_urlsafe(32)
            created = dt.datetime.now(dt.UTC).replace(microsecond=0)
            records.append(KeyRecord(key_id, name, parsed, created, _digest(secret)))
            self._write(records)
        self._next_look = self._clock()  # this store's own change counts at once
        return f"{KEY_PREFIX}{key_id}_{secret}"

    def revoke(self, name_or_id: str) -> KeyRecord:
        """Remove the key with this id (or, failing that, this name); return its record.

        Raises:
            NotFoundError: if no key has that id or name.
        """
        with self._locked():
            records = self._read()
            found = next((r for r in records if r.id == name_or_id), None) or next(
                (r for r in records if r.name == name_or_id), None)
            if found is None:
                raise NotFoundError(f"no API key with id or name {quote_name(name_or_id)} "
                                    f"in {self.path}", hint="see: ferry keys list")
            self._write([record for record in records if record is not found])
        self._next_look = self._clock()  # a revocation by this store takes effect at once
        return found

    def list(self) -> tuple[KeyRecord, ...]:
        """The keys in the file now, oldest first (read afresh, not from the cache)."""
        return tuple(self._read())

    # ------------------------------------------------------------------ the file

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read(self) -> builtins.list[KeyRecord]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise ConfigError(f"cannot read the API keys file {self.path}: "
                              f"{error.strerror}") from None
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
                raise ValueError(f"expected an object with \"format\": {FILE_FORMAT!r}")
            return [self._record(entry) for entry in doc.get("keys", [])]
        except (ValueError, TypeError, KeyError) as error:
            # The message names what is wrong, never a value (hashes stay in the file).
            raise ConfigError(f"the API keys file {self.path} is invalid: "
                              f"{type(error).__name__}",
                              hint=f"it should be a {FILE_FORMAT} file written by "
                                   "`ferry keys add`") from None

    @staticmethod
    def _record(entry: dict[str, Any]) -> KeyRecord:
        key_id, name, digest = entry["id"], entry["name"], entry["sha256"]
        if not (isinstance(key_id, str) and _ID.fullmatch(key_id)
                and isinstance(name, str) and isinstance(digest, str)
                and _SHA256.fullmatch(digest) and isinstance(entry["grants"], list)):
            raise ValueError("a key entry has a field of the wrong shape")
        grants = parse_grants(entry["grants"], error=ConfigError)
        return KeyRecord(key_id, name, grants, dt.datetime.fromisoformat(entry["created"]),
                         digest)

    @staticmethod
    def _index(records: builtins.list[KeyRecord]) -> dict[str, KeyRecord]:
        return {record.id: record for record in records}

    def _write(self, records: builtins.list[KeyRecord]) -> None:
        doc = {"format": FILE_FORMAT, "keys": [record.to_json() for record in records]}
        text = json.dumps(doc, indent=2) + "\n"
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                os.fchmod(out.fileno(), 0o600)
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"),
                     os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
