"""Grants: what a credential lets its holder do, written ``role:pattern``.

A grant pairs a :class:`Role` with a shell-style model-name pattern: ``infer:digits*``,
``read:*``, ``admin:fraud``. API keys store them as these strings (``ferry keys add
--grant``), JWTs carry them in a claim (:mod:`ferry.security.jwt`), and the authenticating
policy hands them on as ``call.grants``: a tuple of ``(role, pattern)`` string pairs, e.g.
``(("infer", "digits*"), ("read", "*"))``, which is the exact format the authorizing
policy (:mod:`ferry.security.roles`) reads. Plain strings rather than :class:`Role` members,
so that :mod:`ferry.call` (a leaf) needs no security type and pairs compare and hash as
written.

Parsing is strict and happens where a grant enters ferry (the CLI, the keys file, a token),
so a typo such as ``infr:digits`` is refused with a message naming it instead of silently
granting nothing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

from ferry.errors import FerryError, InputError, quote_name

__all__ = ["Grant", "Role", "format_grant", "parse_grant", "parse_grants"]

#: One grant as ``call.grants`` holds it: ``(role, model-name pattern)``.
Grant = tuple[str, str]


class Role(enum.StrEnum):
    """What a grant allows; the authorizing policy defines how roles imply one another."""

    READ = "read"
    """Model metadata, model readiness, server metadata, the repository index."""
    INFER = "infer"
    """Inference (and, through the authorizing policy, what ``read`` allows)."""
    ADMIN = "admin"
    """Loading and unloading models (and everything ``infer`` allows)."""


#: Model-name characters (as the repository allows them) plus the shell wildcards
#: ``*``, ``?`` and ``[...]`` that :func:`fnmatch.fnmatchcase` understands.
_PATTERN = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,128}")
_ROLE_NAMES = frozenset(role.value for role in Role)
_ROLES = ", ".join(role.value for role in Role)


def parse_grant(text: str, *, error: type[FerryError] = InputError) -> Grant:
    """Parse ``"role:pattern"`` into ``(role, pattern)``.

    Args:
        text: e.g. ``"infer:digits*"``; the role is one of :class:`Role`, the pattern a
            shell-style model-name pattern (``*`` for every model).
        error: the error class to raise (``InputError`` for a command argument,
            ``ConfigError`` for a keys file, ``AuthenticationError`` for a token's claim).

    Raises:
        error: if the role is unknown or the pattern empty or has characters no model
            name has.
    """
    role, sep, pattern = text.strip().partition(":")
    if not sep:
        raise error(f"grant {quote_name(text)} has no ':'",
                    hint=f"write ROLE:PATTERN, e.g. infer:digits* (roles: {_ROLES})")
    if role not in _ROLE_NAMES:
        raise error(f"grant {quote_name(text)} names the unknown role {quote_name(role)}",
                    hint=f"roles: {_ROLES}")
    if not _PATTERN.fullmatch(pattern):
        raise error(f"grant {quote_name(text)} has an invalid model-name pattern",
                    hint="a pattern is 1-128 characters: letters, digits, '_', '.', '-' and "
                         "the wildcards '*', '?', '[...]'")
    return role, pattern


def parse_grants(texts: Iterable[str] | str, *,
                 error: type[FerryError] = InputError) -> tuple[Grant, ...]:
    """Parse several grants (an iterable, or one string separated by spaces or commas).

    Duplicates are dropped and the order kept, so equal grants give equal tuples.
    """
    if isinstance(texts, str):
        texts = texts.replace(",", " ").split()
    return tuple(dict.fromkeys(parse_grant(text, error=error) for text in texts))


def format_grant(grant: Grant) -> str:
    """``("infer", "digits*")`` -> ``"infer:digits*"`` (how files, tokens and the CLI write it)."""
    return f"{grant[0]}:{grant[1]}"
