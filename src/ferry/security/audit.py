"""The audit log: admin actions, key changes and refused callers, one JSON object a line.

Separate from the server log on purpose: it has its own file (or stream), its own readers
(whoever answers "who unloaded fraud at 3 am?") and its own retention. Each line is one
event::

    {"time": "2025-01-31T09:12:04.118Z", "event": "unload", "principal": "ci-deployer",
     "peer": "10.0.0.7:53122", "request_id": "9f2c...", "protocol": "rest", "door": "asgi",
     "model": "fraud", "outcome": "allowed", "reason": null}

Events: ``auth_failure`` (the authenticator refused: missing, malformed, unknown, revoked or
expired credentials; written by :mod:`ferry.security.authn` through :meth:`AuditLog.record`),
``permission_denied`` (:class:`~ferry.security.roles.Authorize` refused),
``load``/``unload`` (the :class:`Audit` policy: the call passed every policy), and
``key_change`` (``ferry keys add|revoke``, through :func:`audit_key_change`).

**Outcome of admin actions.** A policy runs before the engine acts and never sees how the
call ended, so a ``load`` or ``unload`` line says ``"outcome": "allowed"``: the caller was
let through to the engine. Whether the load then succeeded is in the server log, under
the same ``request_id``.

**No secrets, ever.** A line is built from the call context's request id, protocol,
door, peer and principal (never its credentials) and from named fields. Fields whose name
says secret (``credentials``, ``token``, ``secret``, ``password``, ``authorization``,
``key``) are dropped, and any string that contains the credentials the caller presented
(the whole header value or the token after its scheme) has them replaced by
``<redacted>``, in case a reason quoted them.

**Files.** A path is opened for appending and every line is written by one ``write()``
of the whole line (``O_APPEND``), so several ``--workers`` processes can share one file
without interleaving. ferry does not rotate it: ``logrotate`` with ``copytruncate`` works
(the file stays open and appending continues at the new end). ``"-"`` writes to stderr,
for a container's log collector. Client-supplied strings are cut at 200 characters, so a
client cannot write more audit log than it sends.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, TextIO

from ferry.call import CallContext
from ferry.policy import Action, Kind, Stage

__all__ = ["Audit", "AuditLog", "audit_key_change"]

#: The most characters of any string field written (model names, reasons...).
FIELD_MAX = 200

#: Field names that are never written, whatever a caller passes.
_SECRET_FIELDS = frozenset({"credentials", "token", "secret", "password", "authorization",
                            "key", "api_key"})

_REDACTED = "<redacted>"

#: The outcome written for these events when the caller gives none.
_OUTCOME = {"auth_failure": "refused", "permission_denied": "refused"}


def _clip(text: str) -> str:
    if len(text) <= FIELD_MAX:
        return text
    return f"{text[:FIELD_MAX]}...({len(text) - FIELD_MAX} more)"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Where audit events go: a file (appended to) or ``"-"`` (stderr).

    Call it (``audit(event, call, **fields)``) or use :meth:`record`; both write one line.

    Args:
        target: a path, ``"-"`` for stderr, or an open text stream (tests).
    """

    def __init__(self, target: str | Path | TextIO) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._stream: TextIO | None = None
        if isinstance(target, str | Path):
            if str(target) == "-":
                self._stream = sys.stderr
                self.where = "stderr"
            else:
                path = Path(target)
                # One write() per line on an O_APPEND descriptor: lines of several processes
                # never interleave, and nothing waits in a buffer.
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self.where = str(path)
        else:
            self._stream = target
            self.where = getattr(target, "name", "stream")

    def __call__(self, event: str, call: CallContext | None = None, **fields: Any) -> None:
        """Record ``event`` of ``call`` (the callable the authenticator is given)."""
        self.record(event, call, **fields)

    def record(self, event: str, call: CallContext | None = None, **fields: Any) -> None:
        """Write one line: ``event``, who and where from ``call``, and ``fields``."""
        line = {"time": _now(), "event": event, "principal": None, "peer": None,
                "request_id": None, "protocol": None, "door": None, "model": None,
                "outcome": _OUTCOME.get(event), "reason": None}
        secrets: tuple[str, ...] = ()
        if call is not None:
            line.update(principal=call.principal, peer=call.peer,
                        request_id=call.request_id, protocol=call.protocol, door=call.door)
            secrets = _secrets_of(call.credentials)
        for name, value in fields.items():
            if name.lower() not in _SECRET_FIELDS:
                line[name] = value
        for name, value in line.items():
            if isinstance(value, str):
                for secret in secrets:
                    if secret in value:
                        value = value.replace(secret, _REDACTED)
                line[name] = _clip(value)
        self._write(json.dumps(line, default=str, ensure_ascii=False) + "\n")

    def _write(self, text: str) -> None:
        with self._lock:
            if self._fd is not None:
                os.write(self._fd, text.encode("utf-8"))
            elif self._stream is not None:
                self._stream.write(text)
                self._stream.flush()

    def close(self) -> None:
        """Close the file (a stream is left open: it is not ours)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __repr__(self) -> str:
        return f"AuditLog({self.where!r})"


def _secrets_of(credentials: str | None) -> tuple[str, ...]:
    """The strings a line must not contain: the header value, and its token part."""
    if not credentials:
        return ()
    found = [credentials]
    _scheme, _, token = credentials.strip().partition(" ")
    token = token.strip()
    if len(token) >= 4:  # a token of a few characters would redact innocent words
        found.append(token)
    return tuple(found)


class Audit:
    """The audit policy (:attr:`Stage.AUDIT`, last): record every load and unload let on.

    Runs after authentication and authorization, so every ``load``/``unload`` line is a
    call that reached the engine (``"outcome": "allowed"``; see the module docstring).
    ferry's own reloads (SIGHUP, the repository watch) are recorded too, with protocol
    ``"internal"`` and principal ``"ferry"``.
    """

    stage = Stage.AUDIT

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    def check(self, call: CallContext, action: Action) -> None:
        """Record ``action`` if it is an admin action; never refuses."""
        if action.kind is Kind.LOAD or action.kind is Kind.UNLOAD:
            fields: dict[str, Any] = {"model": action.model, "outcome": "allowed"}
            if action.version:
                fields["version"] = action.version
            self._log.record(action.kind.value, call, **fields)


def audit_key_change(path_or_log: str | Path | AuditLog | None, action: str, key_id: str,
                     name: str) -> None:
    """Record an API key change made by ``ferry keys`` (``action``: ``"add"``, ``"revoke"``).

    ``path_or_log`` is the configured ``[security] audit_log`` (None: no audit log, nothing
    is written). The principal is the local user who ran the command; the line carries the
    key's id and name, never the key.
    """
    if path_or_log is None:
        return
    log = path_or_log if isinstance(path_or_log, AuditLog) else AuditLog(path_or_log)
    try:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (some containers)
            user = f"uid:{os.getuid()}"
        call = CallContext(f"cli-{uuid.uuid4().hex}", "internal", "cli")
        call.principal = user
        log.record("key_change", call, action=action, key_id=key_id, name=name,
                   outcome="done")
    finally:
        if log is not path_or_log:
            log.close()
