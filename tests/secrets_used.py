"""Every secret the tests make, and the check that none of them reached a log.

Tests that make a credential (an API key, a JWT, an HS256 secret, a private key) pass it to
:func:`remember`. When the whole run ends, ``tests/conftest.py`` greps everything the run
logged — the log records of in-process servers, and every server log and audit log that
``ferry serve`` subprocesses wrote under pytest's temporary folder — for each of them, and
fails the run naming the file if one is found (issue 15: no secret, token or key ever
appears in any log).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["LOG_SUFFIXES", "SECRETS", "leaks", "remember"]

#: The secrets of this run (values shorter than 12 characters are not secrets worth a grep).
SECRETS: set[str] = set()

#: Files under the temporary folder that are logs: server output and audit logs.
LOG_SUFFIXES = (".log", ".jsonl")


def remember(*values: str | bytes) -> None:
    """Note secrets the run made (bytes are taken as UTF-8 text, as a log would show them)."""
    for value in values:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        text = text.strip()
        if len(text) >= 12:
            SECRETS.add(text)


def leaks(secrets: Iterable[str], texts: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(where, secret prefix)`` for each secret found in ``(where, text)`` pairs."""
    wanted = list(secrets)
    found = []
    for where, text in texts:
        for secret in wanted:
            if secret in text:
                found.append((where, secret[:6] + "..."))
    return found


def log_files(root: Path) -> Iterable[tuple[str, str]]:
    """``(path, text)`` of every log file below ``root``."""
    for path in sorted(root.rglob("*")):
        if path.suffix in LOG_SUFFIXES and path.is_file():
            yield str(path), path.read_text(errors="replace")
